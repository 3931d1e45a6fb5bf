/* test_config.c - the settings table and its four sources (white-box: the
 * config module is not in the engine library, so its source is included). */
#include "../test.h"

#include "../../config/config.c"

#include <unistd.h>

#define MSG_LEN 512

static int n_of(char **v)
{
    int n = 0;
    while (v && v[n]) n++;
    return n;
}

/* Loads with argv and envp (both NULL-terminated, either may be NULL). */
static int load(struct config *c, char **argv, char **envp, char *msg)
{
    bool help = true;
    int rc = config_load(c, n_of(argv), argv, envp, &help, msg, MSG_LEN);
    if (help) TEST_FAIL_("help_requested set without --help");
    return rc;
}

/* A temporary file with the given contents; path must hold 64 bytes. */
static void temp_file(char *path, const char *text)
{
    snprintf(path, 64, "/tmp/saserve_config_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        TEST_FAIL_("mkstemp failed");
        return;
    }
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) TEST_FAIL_("short write to %s", path);
    close(fd);
}

/* Expects config_load to fail with code and a message containing each of the
 * given fragments; also checks the caller's struct was left alone. */
static void expect_error(char **argv, char **envp, int code, const char *frag1, const char *frag2)
{
    struct config c;
    char msg[MSG_LEN];
    memset(&c, 0xAB, sizeof c);
    int rc = load(&c, argv, envp, msg);
    ASSERT_EQ(rc, code);
    ASSERT_CONTAINS(msg, "config: ");
    if (frag1) ASSERT_CONTAINS(msg, frag1);
    if (frag2) ASSERT_CONTAINS(msg, frag2);
    ASSERT_EQ(c.port, 0xABABABABu); /* untouched on error */
}

static bool settings_equal(const struct config *a, const struct config *b, bool skip_api_key)
{
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        const struct config_setting *s = &config_settings[i];
        const void *pa = config_field_const(a, s), *pb = config_field_const(b, s);
        bool eq;
        if (skip_api_key && s->offset == offsetof(struct config, api_key)) continue;
        switch (s->type) {
        case CONFIG_TYPE_STRING: eq = !strcmp(pa, pb); break;
        case CONFIG_TYPE_UINT: eq = *(const uint32_t *)pa == *(const uint32_t *)pb; break;
        case CONFIG_TYPE_SIZE: eq = *(const uint64_t *)pa == *(const uint64_t *)pb; break;
        case CONFIG_TYPE_FLOAT: eq = *(const float *)pa == *(const float *)pb; break;
        case CONFIG_TYPE_BOOL: eq = *(const bool *)pa == *(const bool *)pb; break;
        default: eq = false;
        }
        if (!eq) {
            fprintf(stderr, "  setting %s differs\n", s->key);
            return false;
        }
    }
    return true;
}

/* ---- the table ---- */

static void test_table_names_follow_the_key(void)
{
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        const struct config_setting *s = &config_settings[i];
        char env[128], flag[128];
        size_t n = strlen(s->key);
        snprintf(env, sizeof env, "SASERVE_");
        snprintf(flag, sizeof flag, "--");
        for (size_t k = 0; k <= n; k++) {
            env[8 + k] = (char)toupper((unsigned char)s->key[k]);
            flag[2 + k] = s->key[k] == '_' ? '-' : s->key[k];
        }
        ASSERT_STR_EQ(s->env, env);
        ASSERT_STR_EQ(s->flag, flag);
        ASSERT_TRUE(s->help && *s->help);
        for (size_t j = 0; j < i; j++) ASSERT_TRUE(strcmp(config_settings[j].key, s->key) != 0);
        /* every default passes its own validation */
        struct config c;
        char msg[MSG_LEN] = "";
        memset(&c, 0, sizeof c);
        int rc = config_set_text(&c, s, s->def, "the defaults", msg, sizeof msg);
        if (rc) TEST_FAIL_("default of %s rejected: %s", s->key, msg);
        if (s->type == CONFIG_TYPE_STRING && !s->choices) ASSERT_TRUE(strlen(s->def) < s->size);
    }
}

static void test_defaults(void)
{
    struct config c;
    config_defaults(&c);
    ASSERT_STR_EQ(c.model, "");
    ASSERT_STR_EQ(c.host, "127.0.0.1");
    ASSERT_EQ(c.port, 8080);
    ASSERT_EQ(c.threads, 2);
    ASSERT_EQ(c.ctx, 0);
    ASSERT_EQ(c.slots, 4);
    ASSERT_EQ(c.queue_max, 64);
    ASSERT_EQ(c.prefill_chunk, 128);
    ASSERT_EQ(c.kv_budget, 0);
    ASSERT_TRUE(!c.mmap);
    ASSERT_TRUE(!c.share);
    ASSERT_STR_EQ(c.share_spans, "auto");
    ASSERT_NEAR(c.share_threshold, 0.9, 1e-7);
    ASSERT_TRUE(!c.rebalance);
    ASSERT_NEAR(c.rebalance_alpha, 0.2, 1e-7);
    ASSERT_NEAR(c.rebalance_tau, 0.01, 1e-9);
    ASSERT_TRUE(!c.rebalance_renormalize);
    ASSERT_EQ(c.max_body, 1 << 20);
    ASSERT_EQ(c.max_prompt_bytes, 256 << 10);
    ASSERT_EQ(c.max_tokens_limit, 4096);
    ASSERT_EQ(c.max_n, 8);
    ASSERT_EQ(c.max_logprobs, 5);
    ASSERT_EQ(c.request_timeout, 15);
    ASSERT_EQ(c.idle_timeout, 30);
    ASSERT_EQ(c.shutdown_grace, 10);
    ASSERT_EQ(c.max_connections, 256);
    ASSERT_EQ(c.per_ip_connections, 32);
    ASSERT_STR_EQ(c.api_key, "");
    ASSERT_STR_EQ(c.chat_template, "");
    ASSERT_STR_EQ(c.log_level, "info");
    ASSERT_STR_EQ(c.config_path, "");

    /* no arguments, no environment: the defaults, and no file is loaded */
    struct config d;
    char msg[MSG_LEN];
    ASSERT_OK(load(&d, NULL, NULL, msg));
    ASSERT_TRUE(settings_equal(&c, &d, false));
    ASSERT_STR_EQ(msg, "");
    char *env[] = {"PATH=/usr/bin", "HOME=/root", "SASERVEX=1", NULL};
    ASSERT_OK(load(&d, NULL, env, msg));
    ASSERT_TRUE(settings_equal(&c, &d, false));
}

/* ---- precedence: defaults < file < flags < env ---- */

static const char *layer_file = "{\"port\": 9000, \"threads\": 3, \"share\": true, \"max_body\": \"2m\",\n"
                                " \"rebalance_alpha\": 1, \"share_spans\": \"3-4\", \"log_level\": \"debug\",\n"
                                " \"kv_budget\": 1048576, \"model\": \"file.gguf\"}\n";

static void test_file_overrides_defaults(void)
{
    char path[64], cfg[80], msg[MSG_LEN];
    struct config c;
    temp_file(path, layer_file);
    char *argv[] = {"--config", path, NULL};
    ASSERT_OK(load(&c, argv, NULL, msg));
    ASSERT_EQ(c.port, 9000);
    ASSERT_EQ(c.threads, 3);
    ASSERT_TRUE(c.share);
    ASSERT_EQ(c.max_body, 2u << 20);
    ASSERT_NEAR(c.rebalance_alpha, 1.0, 0);
    ASSERT_STR_EQ(c.share_spans, "3-4");
    ASSERT_STR_EQ(c.log_level, "debug");
    ASSERT_EQ(c.kv_budget, 1048576);
    ASSERT_STR_EQ(c.model, "file.gguf");
    ASSERT_STR_EQ(c.config_path, path);
    ASSERT_EQ(c.slots, 4); /* not in the file: default */

    /* --config=PATH form */
    snprintf(cfg, sizeof cfg, "--config=%s", path);
    char *argv2[] = {cfg, NULL};
    ASSERT_OK(load(&c, argv2, NULL, msg));
    ASSERT_EQ(c.port, 9000);
    unlink(path);
}

static void test_flags_override_file(void)
{
    char path[64], msg[MSG_LEN];
    struct config c;
    temp_file(path, layer_file);
    char *argv[] = {"--port", "9001", "--threads=5", "--mmap", "--share=off", "-m", "flag.gguf",
                    "--max-body", "256k", "--rebalance", "--rebalance-alpha", "-0.5", "--config", path,
                    "--share-spans=off", "--api-key", "--secret", NULL};
    ASSERT_OK(load(&c, argv, NULL, msg));
    ASSERT_EQ(c.port, 9001);
    ASSERT_EQ(c.threads, 5);
    ASSERT_TRUE(c.mmap);
    ASSERT_TRUE(!c.share);
    ASSERT_STR_EQ(c.model, "flag.gguf");
    ASSERT_EQ(c.max_body, 256u << 10);
    ASSERT_TRUE(c.rebalance);
    ASSERT_NEAR(c.rebalance_alpha, -0.5, 0);
    ASSERT_STR_EQ(c.share_spans, "off");
    ASSERT_STR_EQ(c.api_key, "--secret"); /* a value may start with "--" */
    ASSERT_STR_EQ(c.log_level, "debug");  /* from the file */

    /* the last occurrence of a flag wins; bool forms */
    char *argv2[] = {"--port=1", "--port", "2", "--mmap=false", "--mmap", "--share=on", "--share=0",
                     "--rebalance-renormalize=TRUE", NULL};
    ASSERT_OK(load(&c, argv2, NULL, msg));
    ASSERT_EQ(c.port, 2);
    ASSERT_TRUE(c.mmap);
    ASSERT_TRUE(!c.share);
    ASSERT_TRUE(c.rebalance_renormalize);
    unlink(path);
}

static void test_env_overrides_flags(void)
{
    char path[64], path2[64], msg[MSG_LEN], envcfg[96];
    struct config c;
    temp_file(path, layer_file);
    temp_file(path2, "{\"port\": 7000, \"slots\": 9}");
    char *argv[] = {"--config", path, "--port", "9001", "--share", "--threads", "5", NULL};
    char *env[] = {"PATH=/bin", "SASERVE_PORT=9002", "SASERVE_SHARE=off", "SASERVE_MAX_BODY=3m",
                   "SASERVE_API_KEY=k3y", "SASERVE_REBALANCE_TAU=0.5", "SASERVE_MMAP=1", NULL};
    ASSERT_OK(load(&c, argv, env, msg));
    ASSERT_EQ(c.port, 9002);
    ASSERT_TRUE(!c.share);
    ASSERT_EQ(c.max_body, 3u << 20);
    ASSERT_STR_EQ(c.api_key, "k3y");
    ASSERT_NEAR(c.rebalance_tau, 0.5, 0);
    ASSERT_TRUE(c.mmap);
    ASSERT_EQ(c.threads, 5); /* flag, not overridden */
    ASSERT_STR_EQ(c.model, "file.gguf");

    /* SASERVE_CONFIG names the file, and wins over --config */
    snprintf(envcfg, sizeof envcfg, "SASERVE_CONFIG=%s", path2);
    char *env2[] = {envcfg, NULL};
    ASSERT_OK(load(&c, argv, env2, msg));
    ASSERT_EQ(c.port, 9001); /* flag over file */
    ASSERT_EQ(c.slots, 9);
    ASSERT_STR_EQ(c.model, ""); /* the --config file was not read */
    ASSERT_STR_EQ(c.config_path, path2);

    /* empty SASERVE_CONFIG: no file at all */
    char *env3[] = {"SASERVE_CONFIG=", NULL};
    ASSERT_OK(load(&c, argv, env3, msg));
    ASSERT_EQ(c.slots, 4);
    ASSERT_STR_EQ(c.model, "");
    ASSERT_STR_EQ(c.config_path, "");

    /* env bool spellings */
    static const char *on[] = {"1", "true", "on", "yes", "TRUE", "On"};
    static const char *off[] = {"0", "false", "off", "no", "FALSE", "Off"};
    for (size_t i = 0; i < 6; i++) {
        char e1[64], e2[64];
        snprintf(e1, sizeof e1, "SASERVE_SHARE=%s", on[i]);
        snprintf(e2, sizeof e2, "SASERVE_MMAP=%s", on[i]);
        char *env4[] = {e1, e2, NULL};
        ASSERT_OK(load(&c, NULL, env4, msg));
        ASSERT_TRUE(c.share);
        ASSERT_TRUE(c.mmap);
        /* the off spellings, over flags that turned both on (environment wins) */
        snprintf(e1, sizeof e1, "SASERVE_SHARE=%s", off[i]);
        snprintf(e2, sizeof e2, "SASERVE_MMAP=%s", off[i]);
        char *flags_on[] = {"--share", "--mmap", NULL};
        ASSERT_OK(load(&c, flags_on, env4, msg));
        ASSERT_TRUE(!c.share);
        ASSERT_TRUE(!c.mmap);
    }
    unlink(path);
    unlink(path2);
}

/* ---- values ---- */

static void test_value_syntax(void)
{
    struct config c;
    char msg[MSG_LEN];
    char *a1[] = {"--max-body", "64m", "--max-prompt-bytes", "1", "--kv-budget", "2G", "--share-threshold", "-1",
                  "--ctx", "1048576", "--queue-max", "0", "--shutdown-grace", "0", "--max-logprobs", "0", NULL};
    ASSERT_OK(load(&c, a1, NULL, msg));
    ASSERT_EQ(c.max_body, 64u << 20);
    ASSERT_EQ(c.max_prompt_bytes, 1);
    ASSERT_EQ(c.kv_budget, 2ull << 30);
    ASSERT_NEAR(c.share_threshold, -1, 0);
    ASSERT_EQ(c.ctx, 1048576);
    ASSERT_EQ(c.queue_max, 0);

    char *a2[] = {"--max-body", "1K", "--kv-budget", "1000", "--share-threshold", "1e-1", "--port", "65535", NULL};
    ASSERT_OK(load(&c, a2, NULL, msg));
    ASSERT_EQ(c.max_body, 1024);
    ASSERT_EQ(c.kv_budget, 1000);
    ASSERT_NEAR(c.share_threshold, 0.1, 1e-7);
    ASSERT_EQ(c.port, 65535);

    /* enums and spans */
    static char *tmpl[] = {"", "llama2", "chatml", "llama3"};
    for (size_t i = 0; i < 4; i++) {
        char *a3[] = {"--chat-template", tmpl[i], NULL};
        ASSERT_OK(load(&c, a3, NULL, msg));
        ASSERT_STR_EQ(c.chat_template, tmpl[i]);
    }
    static char *spans[] = {"auto", "off", "none", "", "3-4", "1-2,5-9", "3", " 2-3 , 6 "};
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
        char *a4[] = {"--share-spans", spans[i], NULL};
        int rc = load(&c, a4, NULL, msg);
        if (rc) TEST_FAIL_("spans '%s' rejected: %s", spans[i], msg);
    }
}

static void test_errors_name_the_key(void)
{
    /* out of range, exact message */
    {
        struct config c;
        char msg[MSG_LEN];
        char *env[] = {"SASERVE_PORT=70000", NULL};
        ASSERT_EQ(load(&c, NULL, env, msg), SA_ERR_INVALID_ARG);
        ASSERT_STR_EQ(msg, "config: port: 70000 is out of range 1..65535 (from SASERVE_PORT)");
    }
    char *oor[] = {"--threads", "0", NULL};
    expect_error(oor, NULL, SA_ERR_INVALID_ARG, "threads: 0 is out of range 1..256", "(from --threads)");
    char *neg[] = {"--port=-1", NULL};
    expect_error(neg, NULL, SA_ERR_INVALID_ARG, "port: -1 is out of range", NULL);
    char *huge[] = {"--port", "99999999999999999999999", NULL};
    expect_error(huge, NULL, SA_ERR_INVALID_ARG, "port: 99999999999999999999999 is out of range", NULL);

    /* bad integers: strict, whole string */
    static char *bad_ints[] = {"abc", "", " 80", "80 ", "+80", "80x", "0x10", "8.0", "1e3", "--1"};
    for (size_t i = 0; i < sizeof bad_ints / sizeof bad_ints[0]; i++) {
        char *a[] = {"--port", bad_ints[i], NULL};
        expect_error(a, NULL, SA_ERR_INVALID_ARG, "port: '", "is not an integer (from --port)");
    }
    /* sizes */
    static char *bad_sizes[] = {"12x", "1.5m", "m", "-1k", "1kb", "1 k", "", "99999999999999999999g"};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        char *a[] = {"--max-body", bad_sizes[i], NULL};
        struct config c;
        char msg[MSG_LEN];
        ASSERT_EQ(load(&c, a, NULL, msg), SA_ERR_INVALID_ARG);
        ASSERT_CONTAINS(msg, "config: max_body: ");
    }
    char *sz[] = {"--max-body", "12x", NULL};
    expect_error(sz, NULL, SA_ERR_INVALID_ARG, "max_body: '12x' is not a size", NULL);
    char *small[] = {"--max-body", "100", NULL};
    expect_error(small, NULL, SA_ERR_INVALID_ARG, "max_body: 100 is out of range 1k..64m", NULL);
    char *big[] = {"SASERVE_MAX_PROMPT_BYTES=17m", NULL};
    expect_error(NULL, big, SA_ERR_INVALID_ARG, "max_prompt_bytes: 17m is out of range 1..16m",
                 "(from SASERVE_MAX_PROMPT_BYTES)");
    char *ovf[] = {"--kv-budget", "9999999999999999g", NULL};
    expect_error(ovf, NULL, SA_ERR_INVALID_ARG, "kv_budget: 9999999999999999g is out of range", NULL);

    /* floats: finite, whole string, in range */
    static char *non_finite[] = {"nan", "NaN", "inf", "-inf", "infinity", "1e999"};
    for (size_t i = 0; i < sizeof non_finite / sizeof non_finite[0]; i++) {
        char *a[] = {"--share-threshold", non_finite[i], NULL};
        expect_error(a, NULL, SA_ERR_INVALID_ARG, "share_threshold: ", "is not a finite number");
    }
    char *fbad[] = {"--rebalance-alpha", "0.2x", NULL};
    expect_error(fbad, NULL, SA_ERR_INVALID_ARG, "rebalance_alpha: '0.2x' is not a number", NULL);
    char *frange[] = {"SASERVE_REBALANCE_TAU=1.5", NULL};
    expect_error(NULL, frange, SA_ERR_INVALID_ARG, "rebalance_tau: 1.5 is out of range 0..1", NULL);

    /* bools */
    char *bbad[] = {"--share=maybe", NULL};
    expect_error(bbad, NULL, SA_ERR_INVALID_ARG, "share: 'maybe' is not a boolean", "(from --share)");
    char *benv[] = {"SASERVE_MMAP=", NULL};
    expect_error(NULL, benv, SA_ERR_INVALID_ARG, "mmap: '' is not a boolean", "(from SASERVE_MMAP)");
    char *bno[] = {"--no-share=on", NULL};
    expect_error(bno, NULL, SA_ERR_INVALID_ARG, "share: --no-share takes no value", NULL);

    /* enums, spans, strings */
    char *lvl[] = {"--log-level", "verbose", NULL};
    expect_error(lvl, NULL, SA_ERR_INVALID_ARG, "log_level: 'verbose' is not one of 'debug', 'info', 'warn', 'error'",
                 NULL);
    char *tpl[] = {"SASERVE_CHAT_TEMPLATE=llama4", NULL};
    expect_error(NULL, tpl, SA_ERR_INVALID_ARG, "chat_template: 'llama4' is not one of",
                 "(from SASERVE_CHAT_TEMPLATE)");
    char *sp[] = {"--share-spans", "3-x", NULL};
    expect_error(sp, NULL, SA_ERR_INVALID_ARG, "share_spans: span '3-x'", NULL);
    char *sp2[] = {"--share-spans", "4-3", NULL};
    expect_error(sp2, NULL, SA_ERR_INVALID_ARG, "share_spans: span '4-3'", NULL);
    char *sp3[] = {"--share-spans", "0-2", NULL};
    expect_error(sp3, NULL, SA_ERR_INVALID_ARG, "share_spans: span '0-2'", NULL);
    char *host[] = {"--host=", NULL};
    expect_error(host, NULL, SA_ERR_INVALID_ARG, "host: value must not be empty", NULL);
    char longval[1100];
    memset(longval, 'a', sizeof longval - 1);
    longval[sizeof longval - 1] = 0;
    char *lng[] = {"--model", longval, NULL};
    expect_error(lng, NULL, SA_ERR_INVALID_ARG, "model: value is 1099 bytes long, the limit is 1023", NULL);
    char *utf[] = {"--api-key", "\xff\xfe", NULL};
    expect_error(utf, NULL, SA_ERR_INVALID_ARG, "api_key: value is not valid UTF-8", NULL);

    /* flags */
    char *unk[] = {"--prot", "80", NULL};
    expect_error(unk, NULL, SA_ERR_INVALID_ARG, "unknown flag '--prot'", "(did you mean '--port'?)");
    char *unk2[] = {"--bogus-thing=1", NULL};
    expect_error(unk2, NULL, SA_ERR_INVALID_ARG, "unknown flag '--bogus-thing'", NULL);
    char *unk3[] = {"--no-port", NULL};
    expect_error(unk3, NULL, SA_ERR_INVALID_ARG, "unknown flag '--no-port'", NULL);
    char *shortu[] = {"-x", NULL};
    expect_error(shortu, NULL, SA_ERR_INVALID_ARG, "unknown flag '-x'", NULL);
    char *miss[] = {"--port", NULL};
    expect_error(miss, NULL, SA_ERR_INVALID_ARG, "port: missing value (from --port)", NULL);
    char *miss2[] = {"-m", NULL};
    expect_error(miss2, NULL, SA_ERR_INVALID_ARG, "model: missing value (from -m)", NULL);
    char *miss3[] = {"--config", NULL};
    expect_error(miss3, NULL, SA_ERR_INVALID_ARG, "--config needs a file path", NULL);
    {
        struct config c;
        char msg[MSG_LEN];
        char *holes[] = {"--port", NULL, NULL};
        ASSERT_EQ(config_load(&c, 2, holes, NULL, NULL, msg, sizeof msg), SA_ERR_INVALID_ARG);
        ASSERT_STR_EQ(msg, "config: argv[1] is NULL");
        ASSERT_EQ(config_load(&c, -1, NULL, NULL, NULL, NULL, 0), SA_ERR_INVALID_ARG);
    }
    char *pos[] = {"serve", NULL};
    expect_error(pos, NULL, SA_ERR_INVALID_ARG, "unexpected argument 'serve'", NULL);

    /* environment */
    char *uenv[] = {"SASERVE_PROT=80", NULL};
    expect_error(NULL, uenv, SA_ERR_INVALID_ARG,
                 "unknown environment variable SASERVE_PROT (did you mean 'SASERVE_PORT'?)", NULL);
}

static void test_file_errors(void)
{
    struct {
        const char *json, *frag1, *frag2;
    } cases[] = {
        {"{\"prot\": 80}", "unknown key 'prot' in ", "(did you mean 'port'?)"},
        {"{\"port\": \"8080\"}", "port: expected an integer, got a string (from ", NULL},
        {"{\"port\": 8080.0}", "port: expected an integer, got a real number", NULL},
        {"{\"port\": 70000}", "port: 70000 is out of range 1..65535 (from ", NULL},
        {"{\"port\": -5}", "port: -5 is out of range", NULL},
        {"{\"mmap\": 1}", "mmap: expected true or false, got an integer", NULL},
        {"{\"mmap\": \"true\"}", "mmap: expected true or false, got a string", NULL},
        {"{\"model\": null}", "model: expected a string, got null", NULL},
        {"{\"share_threshold\": \"0.9\"}", "share_threshold: expected a number, got a string", NULL},
        {"{\"share_threshold\": 2}", "share_threshold: 2 is out of range -1..1", NULL},
        {"{\"max_body\": \"12x\"}", "max_body: '12x' is not a size", NULL},
        {"{\"max_body\": 1.5}", "max_body: expected an integer or a size string", NULL},
        {"{\"max_body\": [1]}", "max_body: expected an integer or a size string such as \"256m\", got an array", NULL},
        {"{\"log_level\": \"loud\"}", "log_level: 'loud' is not one of", NULL},
        {"{\"api_key\": \"a\\u0000b\"}", "is not allowed", NULL},
        {"{\"port\": 1, \"port\": 2}", "duplicate", NULL},
        {"{\"port\": 1,}", "config: /tmp/saserve_config_", NULL},
        {"[1, 2]", "expected a JSON object, got an array", NULL},
        {"", "config: /tmp/saserve_config_", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[64];
        temp_file(path, cases[i].json);
        char *argv[] = {"--config", path, NULL};
        expect_error(argv, NULL, SA_ERR_INVALID_ARG, cases[i].frag1, cases[i].frag2);
        unlink(path);
    }
    /* the path is named in the message */
    {
        char path[64], msg[MSG_LEN];
        struct config c;
        temp_file(path, "{\"prot\": 80}");
        char *argv[] = {"--config", path, NULL};
        ASSERT_EQ(load(&c, argv, NULL, msg), SA_ERR_INVALID_ARG);
        ASSERT_CONTAINS(msg, path);
        unlink(path);
    }
    char *missing[] = {"--config", "/nonexistent/saserve.json", NULL};
    expect_error(missing, NULL, SA_ERR_IO, "cannot open /nonexistent/saserve.json", NULL);
    char *envmissing[] = {"SASERVE_CONFIG=/nonexistent/x.json", NULL};
    expect_error(NULL, envmissing, SA_ERR_IO, "/nonexistent/x.json", NULL);
}

static void test_help(void)
{
    struct config c;
    char msg[MSG_LEN];
    bool help = false;
    char *argv[] = {"--port", "1", "--help", NULL};
    ASSERT_OK(config_load(&c, 3, argv, NULL, &help, msg, sizeof msg));
    ASSERT_TRUE(help);
    ASSERT_EQ(c.port, 8080); /* nothing else was applied */
    /* --help wins over a bad flag before it; -h works too */
    char *argv2[] = {"--bogus", "-h", NULL};
    help = false;
    ASSERT_OK(config_load(&c, 2, argv2, NULL, &help, msg, sizeof msg));
    ASSERT_TRUE(help);
    /* a value that looks like --help is a value */
    char *argv3[] = {"--api-key", "--help", NULL};
    ASSERT_OK(config_load(&c, 2, argv3, NULL, &help, msg, sizeof msg));
    ASSERT_TRUE(!help);
    ASSERT_STR_EQ(c.api_key, "--help");

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ASSERT_TRUE(f != NULL);
    if (!f) return;
    config_print_help(f);
    fclose(f);
    ASSERT_CONTAINS(text, "--port N");
    ASSERT_CONTAINS(text, "SASERVE_PORT");
    ASSERT_CONTAINS(text, "default 8080, range 1..65535");
    ASSERT_CONTAINS(text, "-m, --model");
    ASSERT_CONTAINS(text, "--[no-]mmap");
    ASSERT_CONTAINS(text, "--max-body SIZE");
    ASSERT_CONTAINS(text, "default 1m, range 1k..64m");
    ASSERT_CONTAINS(text, "--config PATH");
    ASSERT_CONTAINS(text, "SASERVE_CONFIG");
    ASSERT_CONTAINS(text, "'debug', 'info', 'warn', 'error'");
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        ASSERT_CONTAINS(text, config_settings[i].env);
        ASSERT_CONTAINS(text, config_settings[i].help);
    }
    free(text);
}

/* ---- output ---- */

static void test_write_json_round_trip(void)
{
    struct config c, d;
    char msg[MSG_LEN];
    char *argv[] = {"--model", "dir/\"odd\" name\\x\n\t\x01.gguf", "--host", "::1", "--port", "1",
                    "--threads", "256", "--ctx", "77", "--kv-budget", "1000", "--max-body", "1536k",
                    "--max-prompt-bytes", "3k", "--no-mmap", "--share", "--share-spans", "1-2,4",
                    "--share-threshold", "-1", "--rebalance-alpha", "0.1", "--rebalance-tau", "1e-05",
                    "--rebalance-renormalize", "--chat-template", "chatml", "--log-level", "error",
                    "--max-prompt-bytes", "16m", "--model", "caf\xc3\xa9 \"q\".gguf", NULL};
    ASSERT_OK(load(&c, argv, NULL, msg));
    if (*msg) fprintf(stderr, "  %s\n", msg);

    char path[64], cfg[80];
    temp_file(path, "");
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    if (!f) return;
    ASSERT_OK(config_write_json(&c, f));
    fclose(f);
    snprintf(cfg, sizeof cfg, "--config=%s", path);
    char *argv2[] = {cfg, NULL};
    ASSERT_OK(load(&d, argv2, NULL, msg));
    if (*msg) fprintf(stderr, "  %s\n", msg);
    ASSERT_TRUE(settings_equal(&c, &d, false));
    ASSERT_STR_EQ(d.model, "caf\xc3\xa9 \"q\".gguf");

    /* the written text: sizes with suffixes where exact, floats short */
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    ASSERT_TRUE(m != NULL);
    if (!m) return;
    c.max_body = 1536 << 10;
    c.kv_budget = 1000;
    c.api_key[0] = 0;
    ASSERT_OK(config_write_json(&c, m));
    fclose(m);
    ASSERT_CONTAINS(text, "\"max_body\": \"1536k\"");
    ASSERT_CONTAINS(text, "\"kv_budget\": 1000,");
    ASSERT_CONTAINS(text, "\"rebalance_alpha\": 0.1,");
    ASSERT_CONTAINS(text, "\"share_threshold\": -1.0,");
    ASSERT_CONTAINS(text, "\"rebalance_tau\": 1e-05,");
    ASSERT_CONTAINS(text, "\"api_key\": \"\"");
    ASSERT_TRUE(strstr(text, "config_path") == NULL);
    free(text);

    /* a set api_key is masked, and the masked value still loads */
    snprintf(c.api_key, sizeof c.api_key, "topsecret");
    f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    if (!f) return;
    ASSERT_OK(config_write_json(&c, f));
    fclose(f);
    f = fopen(path, "r");
    char buf[4096] = "";
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    ASSERT_CONTAINS(buf, "\"api_key\": \"***\"");
    ASSERT_TRUE(strstr(buf, "topsecret") == NULL);
    ASSERT_OK(load(&d, argv2, NULL, msg));
    ASSERT_TRUE(settings_equal(&c, &d, true));
    ASSERT_STR_EQ(d.api_key, "***");
    unlink(path);
}

static void test_default_file_loads(void)
{
    struct config c, d;
    char msg[MSG_LEN];
    char *argv[] = {"--config", "config/saserve.json", NULL};
    int rc = load(&c, argv, NULL, msg);
    ASSERT_OK(rc);
    if (rc) fprintf(stderr, "  %s\n", msg);
    ASSERT_STR_EQ(c.model, "../shared/models/stories260K/stories260K.gguf");
    ASSERT_STR_EQ(c.config_path, "config/saserve.json");

    ASSERT_STR_EQ(c.vision_model, "config/models/phidnn-fmnist.gguf");

    /* it states every key, with the built-in default (but the two models it serves) */
    config_defaults(&d);
    snprintf(d.model, sizeof d.model, "%s", c.model);
    snprintf(d.vision_model, sizeof d.vision_model, "%s", c.vision_model);
    ASSERT_TRUE(settings_equal(&c, &d, false));
    json_error_t jerr;
    json_t *root = json_load_file("config/saserve.json", 0, &jerr);
    ASSERT_TRUE(root != NULL);
    if (!root) return;
    ASSERT_EQ(json_object_size(root), CONFIG_N_SETTINGS);
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++)
        if (!json_object_get(root, config_settings[i].key)) TEST_FAIL_("saserve.json lacks %s", config_settings[i].key);
    json_decref(root);
}

int main(void)
{
    TEST_RUN(test_table_names_follow_the_key);
    TEST_RUN(test_defaults);
    TEST_RUN(test_file_overrides_defaults);
    TEST_RUN(test_flags_override_file);
    TEST_RUN(test_env_overrides_flags);
    TEST_RUN(test_value_syntax);
    TEST_RUN(test_errors_name_the_key);
    TEST_RUN(test_file_errors);
    TEST_RUN(test_help);
    TEST_RUN(test_write_json_round_trip);
    TEST_RUN(test_default_file_loads);
    TEST_DONE();
}
