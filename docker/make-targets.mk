# docker/make-targets.mk - deployment targets, included by the Makefile:
#
#   make deps-deploy     Debian packages for all deployment tests (needs root or sudo);
#                        deps-image / deps-scale: those of one test
#   make test-manifests  yamllint + offline checks of docker/ and docker/k8s/ (fast; installs nothing)
#   make test-image      build the Dockerfile with buildah and run the image (slow, minutes)
#   make test-scale      3 replicas + nginx (least_conn) + Prometheus on 127.0.0.1, load, SIGTERM one
#   make image           docker build -t saserve . (NATIVE=1 for a -march=native image)
#
# Uses SHARED, BUILD and NATIVE from the Makefile when it includes this file.

SHARED ?= ../shared
BUILD  ?= build
IMAGE_PKGS  := debootstrap buildah podman curl python3
SCALE_PKGS  := nginx prometheus curl python3
LINT_PKGS   := yamllint python3-yaml
DOCKER      ?= docker
IMAGE_TAG   ?= saserve:latest

.PHONY: deps-deploy deps-image deps-scale test-manifests test-image test-scale image

# apt_ensure: defined in the Makefile

deps-deploy:
	$(call apt_ensure,$(sort $(IMAGE_PKGS) $(SCALE_PKGS) $(LINT_PKGS)))
deps-image:
	$(call apt_ensure,$(IMAGE_PKGS))
deps-scale:
	$(call apt_ensure,$(SCALE_PKGS))

test-manifests:
	BUILD=$(BUILD) bash tests/deploy/test_manifests.sh

test-image: deps-image
	SHARED=$(SHARED) bash tests/deploy/test_image.sh

test-scale: deps-scale $(BUILD)/saserve
	SHARED=$(SHARED) BUILD=$(BUILD) bash tests/deploy/test_scale.sh

image:
	$(DOCKER) build --build-arg NATIVE=$(or $(NATIVE),0) -t $(IMAGE_TAG) .
