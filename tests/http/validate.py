#!/usr/bin/env python3
"""validate.py - check saserve's HTTP answers against openapi.yaml.

Standard library plus PyYAML (Debian: python3-yaml). A small validator for the
OpenAPI 3.0 schema subset openapi.yaml uses: $ref (local), type, nullable,
enum, required, properties, additionalProperties, items, minItems, maxItems,
minimum, maximum, exclusiveMinimum/Maximum (3.0 booleans), minLength,
maxLength, pattern, oneOf, anyOf, allOf, not. Descriptive keywords (description,
example, default, format, title, x-*) are ignored.

Usage:
  validate.py SPEC --check-spec
      The spec itself: it parses, is OpenAPI 3.0.x, every $ref resolves, the
      five endpoints and the documented error statuses are there, and every
      `example` given for a schema or a JSON request/response validates.
  validate.py SPEC --manifest FILE
      FILE has one tab-separated line per HTTP exchange:
        LABEL METHOD PATH STATUS CONTENT_TYPE BODY_FILE [HEADERS_FILE [...]]
      The answer is looked up in the spec by path, method, status and media
      type; JSON bodies are validated against the schema; text/event-stream
      bodies are checked for SSE framing (data: lines, blank-line separated,
      ending with data: [DONE]) and every event's JSON is validated against
      the media type's x-sse-event schema; image/png bodies must start with the
      PNG signature and an IHDR chunk; other text bodies are validated as
      strings; with HEADERS_FILE (curl -D), the
      response headers the spec marks required must be present and valid.
      Prints "PASS schema LABEL" or "FAIL schema LABEL: why" per line; exit
      status 1 if any failed.
  validate.py SPEC --schema NAME FILE
      Validate one JSON file against components/schemas/NAME.
"""
import json
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.stderr.write("validate.py: PyYAML is missing (Debian package python3-yaml; make deps)\n")
    sys.exit(3)

IGNORED = {"description", "example", "examples", "default", "format", "title", "readOnly", "writeOnly",
           "deprecated", "externalDocs", "xml", "discriminator"}


def _no_constant(name):
    raise ValueError("non-standard JSON constant %s" % name)


def load_json(text):
    """Strict JSON: NaN/Infinity are not JSON."""
    return json.loads(text, parse_constant=_no_constant)


class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)

    def resolve(self, ref):
        if not ref.startswith("#/"):
            raise KeyError("only local $ref are supported: %s" % ref)
        node = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[part]
        return node

    def deref(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            node = self.resolve(node["$ref"])
            seen += 1
            if seen > 32:
                raise KeyError("$ref loop")
        return node

    # ---- schema validation ----

    def validate(self, schema, value, where="$"):
        """Returns a list of error strings (empty when value conforms)."""
        errs = []
        self._v(schema, value, where, errs)
        return errs

    def _v(self, schema, value, where, errs):
        if isinstance(schema, dict) and "$ref" in schema:
            schema = self.deref(schema)
        if schema is True or schema is None or schema == {}:
            return
        if schema is False:
            errs.append("%s: no value allowed here" % where)
            return
        if value is None:
            if schema.get("nullable") or (None in schema.get("enum", [])):
                return
            # OpenAPI 3.0: nullable counts only beside a type, so a nullable
            # union is an anyOf with a nullable branch: null goes through the
            # combinators; a schema with a type (or no type and no combinator)
            # decides here
            if any(k in schema for k in ("type", "enum", "properties", "items")):
                errs.append("%s: null is not allowed" % where)
                return
            if not any(k in schema for k in ("oneOf", "anyOf", "allOf", "not")):
                return
        for sub in schema.get("allOf", []):
            self._v(sub, value, where, errs)
        if "oneOf" in schema:
            matches = [s for s in schema["oneOf"] if not self.validate(s, value, where)]
            if len(matches) != 1:
                detail = ""
                if not matches:
                    # show the errors of the closest alternative
                    best = min((self.validate(s, value, where) for s in schema["oneOf"]), key=len)
                    detail = ": " + "; ".join(best[:3])
                errs.append("%s: matches %d of the oneOf alternatives, expected exactly 1%s" % (where, len(matches), detail))
        if "anyOf" in schema:
            if not any(not self.validate(s, value, where) for s in schema["anyOf"]):
                errs.append("%s: matches none of the anyOf alternatives" % where)
        if "not" in schema and not self.validate(schema["not"], value, where):
            errs.append("%s: matches the schema under 'not'" % where)
        if value is None:
            return
        t = schema.get("type")
        if t is not None and not self._type_ok(t, value):
            errs.append("%s: expected %s, got %s" % (where, t, type(value).__name__ if not isinstance(value, bool) else "boolean"))
            return
        if "enum" in schema and value not in schema["enum"]:
            errs.append("%s: %r is not one of %r" % (where, value, schema["enum"]))
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                errs.append("%s: shorter than %d" % (where, schema["minLength"]))
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                errs.append("%s: longer than %d" % (where, schema["maxLength"]))
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errs.append("%s: %r does not match /%s/" % (where, value, schema["pattern"]))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema:
                m = schema["minimum"]
                if value < m or (schema.get("exclusiveMinimum") is True and value == m):
                    errs.append("%s: %r is below the minimum %r%s" % (where, value, m, " (exclusive)" if schema.get("exclusiveMinimum") is True else ""))
            if "maximum" in schema:
                m = schema["maximum"]
                if value > m or (schema.get("exclusiveMaximum") is True and value == m):
                    errs.append("%s: %r is above the maximum %r" % (where, value, m))
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                errs.append("%s: fewer than %d items" % (where, schema["minItems"]))
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                errs.append("%s: more than %d items" % (where, schema["maxItems"]))
            if "items" in schema:
                for i, item in enumerate(value):
                    self._v(schema["items"], item, "%s[%d]" % (where, i), errs)
        if isinstance(value, dict):
            props = schema.get("properties", {})
            for key in schema.get("required", []):
                if key not in value:
                    errs.append("%s: required field '%s' is missing" % (where, key))
            for key, item in value.items():
                if key in props:
                    self._v(props[key], item, "%s.%s" % (where, key), errs)
                else:
                    extra = schema.get("additionalProperties", True)
                    if extra is False:
                        errs.append("%s: field '%s' is not in the schema" % (where, key))
                    elif isinstance(extra, dict):
                        self._v(extra, item, "%s[%r]" % (where, key), errs)

    @staticmethod
    def _type_ok(t, value):
        if t == "object":
            return isinstance(value, dict)
        if t == "array":
            return isinstance(value, list)
        if t == "string":
            return isinstance(value, str)
        if t == "boolean":
            return isinstance(value, bool)
        if t == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        if t == "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        raise KeyError("unknown type %r in the spec" % t)

    # ---- lookups ----

    def template_of(self, path):
        """The spec's path for a concrete one: exact, else a templated path whose
        {param} segments match one non-empty segment each (/v2/models/{name})."""
        paths = self.doc.get("paths", {})
        if path in paths:
            return path
        segs = path.split("/")
        for p in paths:
            ps = p.split("/")
            if len(ps) == len(segs) and "{" in p and all(
                    a == b or (a.startswith("{") and a.endswith("}") and b) for a, b in zip(ps, segs)):
                return p
        return path

    def response(self, method, path, status):
        paths = self.doc.get("paths", {})
        path = self.template_of(path)
        if path not in paths:
            # unknown URLs answer 404 by the document's convention; check
            # the body against the shared NotFound response
            if str(status) == "404":
                return self.deref(self.doc["components"]["responses"]["NotFound"]), None
            return None, "path %s is not in the spec" % path
        op = paths[path].get(method.lower())
        if op is None and method.upper() == "HEAD":
            op = paths[path].get("get")
        if op is None:
            allowed = [m for m in paths[path] if m in ("get", "post", "put", "delete", "patch")]
            if str(status) == "405":
                # the 405 of a wrong method is documented on the path's real operation
                op = paths[path][allowed[0]]
            else:
                return None, "%s %s is not in the spec" % (method, path)
        resp = op.get("responses", {}).get(str(status))
        if resp is None:
            return None, "status %s of %s %s is not documented" % (status, method, path)
        return self.deref(resp), None


def parse_headers(path):
    """Last header block of a curl -D file -> {lower name: value}."""
    with open(path, encoding="latin-1") as f:
        text = f.read()
    blocks = [b for b in re.split(r"\r?\n\r?\n", text) if b.strip()]
    if not blocks:
        return {}
    out = {}
    for line in blocks[-1].splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


def parse_sse(text):
    """Returns (list of data payloads, list of framing errors)."""
    errs = []
    events = []
    if not text.endswith("\n\n"):
        errs.append("the stream does not end with a blank line")
    for block in text.split("\n\n"):
        if block == "":
            continue
        data = []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue  # comment (keep-alive)
            if line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("data:"):
                data.append(line[5:])
            else:
                errs.append("unexpected SSE line %r" % line[:80])
        if data:
            events.append("\n".join(data))
    if not events or events[-1] != "[DONE]":
        errs.append("the stream does not end with data: [DONE]")
    if events.count("[DONE]") > 1:
        errs.append("data: [DONE] appears %d times" % events.count("[DONE]"))
    return events, errs


def check_exchange(spec, method, path, status, ctype, body_file, headers_file):
    errs = []
    resp, why = spec.response(method, path, status)
    if resp is None:
        return [why]
    mtype = (ctype or "").split(";")[0].strip().lower()
    content = resp.get("content", {})
    with open(body_file, "rb") as f:
        raw = f.read()
    if not content:
        if raw:
            errs.append("a body was sent but the spec documents none")
        return errs
    if mtype not in content:
        return ["media type %r is not documented for %s %s %s (documented: %s)" % (mtype, method, path, status, ", ".join(content))]
    media = content[mtype]
    if mtype == "image/png":  # binary: the signature and an IHDR first chunk
        if raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[12:16] != b"IHDR":
            errs.append("the body is not a PNG")
        return errs
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return ["the body is not valid UTF-8: %s" % e]
    if mtype == "application/json":
        try:
            value = load_json(text)
        except ValueError as e:
            return ["the body is not valid JSON: %s" % e]
        errs += spec.validate(media.get("schema", {}), value)
    elif mtype == "text/event-stream":
        events, ferrs = parse_sse(text)
        errs += ferrs
        ev_schema = media.get("x-sse-event")
        for i, ev in enumerate(events):
            if ev == "[DONE]":
                continue
            try:
                value = load_json(ev)
            except ValueError as e:
                errs.append("event %d is not valid JSON: %s" % (i, e))
                continue
            if ev_schema is not None:
                errs += spec.validate(ev_schema, value, "event[%d]" % i)
    else:
        errs += spec.validate(media.get("schema", {}), text)
    if headers_file:
        hdrs = parse_headers(headers_file)
        for name, h in resp.get("headers", {}).items():
            h = spec.deref(h)
            v = hdrs.get(name.lower())
            if v is None:
                if h.get("required"):
                    errs.append("required header %s is missing" % name)
                continue
            hs = spec.deref(h.get("schema", {}))
            if hs.get("type") == "integer":
                if not re.fullmatch(r"[0-9]+", v):
                    errs.append("header %s: %r is not an integer" % (name, v))
                    continue
                errs += ["header " + e for e in spec.validate(hs, int(v), name)]
            else:
                errs += ["header " + e for e in spec.validate(hs, v, name)]
    return errs


def check_spec(spec):
    errs = []
    doc = spec.doc
    if not str(doc.get("openapi", "")).startswith("3.0."):
        errs.append("openapi is %r, expected 3.0.x" % doc.get("openapi"))
    for k in ("info", "paths", "components"):
        if k not in doc:
            errs.append("no %s" % k)

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    try:
                        spec.resolve(v)
                    except (KeyError, TypeError) as e:
                        errs.append("%s: $ref %s does not resolve (%s)" % (where, v, e))
                else:
                    walk(v, where + "/" + str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s/%d" % (where, i))

    walk(doc, "#")
    want = {("/v1/completions", "post"): ["200", "400", "401", "404", "405", "408", "413", "503"],
            ("/v1/chat/completions", "post"): ["200", "400", "401", "404", "405", "408", "413", "503"],
            ("/v1/models", "get"): ["200"], ("/health", "get"): ["200", "503"], ("/metrics", "get"): ["200"],
            ("/v2/health/ready", "get"): ["200", "503"], ("/v2/models/{name}", "get"): ["200", "401", "404"],
            ("/v2/models/{name}/infer", "post"): ["200", "400", "401", "404", "405", "413", "503"]}
    for (p, m), statuses in want.items():
        op = doc.get("paths", {}).get(p, {}).get(m)
        if op is None:
            errs.append("%s %s is missing" % (m.upper(), p))
            continue
        for s in statuses:
            if s not in op.get("responses", {}):
                errs.append("%s %s: status %s is not documented" % (m.upper(), p, s))
    if errs:
        return errs
    # 503 of the generation endpoints carries Retry-After
    r503 = spec.deref(doc["paths"]["/v1/completions"]["post"]["responses"]["503"])
    if "Retry-After" not in r503.get("headers", {}):
        errs.append("503 has no Retry-After header")
    # examples validate against their schemas
    for name, schema in doc["components"]["schemas"].items():
        if isinstance(schema, dict) and "example" in schema and schema.get("type") in ("object", "array"):
            errs += ["example of %s: %s" % (name, e) for e in spec.validate(schema, schema["example"])]
    for p, item in doc["paths"].items():
        for m, op in item.items():
            if not isinstance(op, dict):
                continue
            body = spec.deref(op.get("requestBody", {}))
            media = body.get("content", {}).get("application/json")
            if media and "example" in media:
                errs += ["%s %s request example: %s" % (m.upper(), p, e) for e in spec.validate(media["schema"], media["example"])]
            for st, resp in op.get("responses", {}).items():
                resp = spec.deref(resp)
                media = resp.get("content", {}).get("application/json")
                if media and "example" in media:
                    errs += ["%s %s %s example: %s" % (m.upper(), p, st, e) for e in spec.validate(media["schema"], media["example"])]
    return errs


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    try:
        spec = Spec(argv[1])
    except (OSError, yaml.YAMLError) as e:
        print("FAIL schema spec: %s does not parse: %s" % (argv[1], e))
        return 1
    if argv[2] == "--check-spec":
        errs = check_spec(spec)
        if errs:
            print("FAIL schema %s: %s" % (argv[1], "; ".join(errs[:10])))
            return 1
        print("PASS schema %s is a valid OpenAPI 3.0 document (refs resolve, examples validate)" % argv[1])
        return 0
    if argv[2] == "--schema" and len(argv) == 5:
        with open(argv[4], encoding="utf-8") as f:
            value = load_json(f.read())
        errs = spec.validate({"$ref": "#/components/schemas/" + argv[3]}, value)
        for e in errs:
            print(e)
        return 1 if errs else 0
    if argv[2] == "--manifest" and len(argv) == 4:
        bad = 0
        with open(argv[3], encoding="utf-8") as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
        for line in lines:
            cols = line.split("\t")
            label, method, path, status, ctype, body = cols[:6]
            headers = cols[6] if len(cols) > 6 and cols[6] else None
            if status == "000":
                continue  # no answer (a killed client): nothing to validate
            try:
                errs = check_exchange(spec, method, path, status, ctype, body, headers)
            except (OSError, KeyError) as e:
                errs = ["cannot check: %s" % e]
            if errs:
                bad += 1
                print("FAIL schema %s (%s %s -> %s): %s" % (label, method, path, status, "; ".join(errs[:4])))
            else:
                print("PASS schema %s (%s %s -> %s %s)" % (label, method, path, status, ctype.split(";")[0]))
        return 1 if bad else 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
