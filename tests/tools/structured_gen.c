/*
 * structured_gen - generate structured outputs with the engine, for an
 * external validator (tests/scripts/test_structured_output.sh runs them
 * through ajv).
 *
 *   structured_gen MODEL RUNS SCHEMA.json...   ("-" instead of a file: json_object)
 *
 * For each schema: response_format json_schema through server/schema.c (the
 * converter the server uses), engine_grammar_compile, then RUNS generations
 * (run 0 greedy, the others temperature 1 with seeds 1..), alternating two
 * prompts. Prints one JSON line per run on stdout:
 *   {"schema": "<file>", "run": r, "finish": "stop"|"length"|"error", "tokens": n, "text": "..."}
 * Exit 1 when the model, a schema or a grammar cannot be loaded.
 */
#include "server/schema.c"

#include "engine/engine.h"

#include <pthread.h>

struct out {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[16384];
    size_t n;
    bool done;
    struct engine_event last;
};

static void on_event(void *user, const struct engine_event *ev)
{
    struct out *o = user;
    pthread_mutex_lock(&o->mu);
    if (ev->type == ENGINE_EV_TOKEN) {
        if (o->n + ev->text_len < sizeof o->text) {
            memcpy(o->text + o->n, ev->text, ev->text_len);
            o->n += ev->text_len;
        }
    } else {
        o->last = *ev;
        o->done = true;
        pthread_cond_signal(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: structured_gen MODEL RUNS SCHEMA.json|-...\n");
        return 2;
    }
    int runs = atoi(argv[2]);
    char msg[512];
    struct engine_config cfg = engine_default_config();
    cfg.model_path = argv[1];
    cfg.n_ctx = 512;
    cfg.share_spans = "off";
    struct engine *e;
    if (engine_create(&cfg, &e, msg, sizeof msg)) {
        fprintf(stderr, "structured_gen: %s\n", msg);
        return 1;
    }
    int rc = 0;
    for (int a = 3; a < argc && !rc; a++) {
        char *gbnf = NULL;
        if (!strcmp(argv[a], "-")) {
            gbnf = strdup(schema_json_object_gbnf());
        } else {
            json_error_t je;
            json_t *s = json_load_file(argv[a], 0, &je);
            json_t *rf = s ? json_pack("{s:s, s:{s:s, s:O, s:b}}", "type", "json_schema", "json_schema", "name", "t",
                                       "schema", s, "strict", 1)
                           : NULL;
            if (!rf || schema_response_format_gbnf(rf, &gbnf, msg, sizeof msg)) {
                fprintf(stderr, "structured_gen: %s: %s\n", argv[a], s ? msg : je.text);
                rc = 1;
            }
            json_decref(rf);
            json_decref(s);
            if (rc) break;
        }
        struct grammar *g = NULL;
        if (!gbnf || engine_grammar_compile(e, gbnf, strlen(gbnf), &g, msg, sizeof msg)) {
            fprintf(stderr, "structured_gen: %s: %s\n", argv[a], gbnf ? msg : "out of memory");
            free(gbnf);
            rc = 1;
            break;
        }
        free(gbnf);
        for (int r = 0; r < runs; r++) {
            const char *prompt = r % 2 ? "Once upon a time" : "{\"name\": \"";
            int32_t *ids;
            size_t n;
            if (engine_tokenize(e, prompt, strlen(prompt), true, false, &ids, &n)) {
                rc = 1;
                break;
            }
            struct out o = {.n = 0};
            pthread_mutex_init(&o.mu, NULL);
            pthread_cond_init(&o.cv, NULL);
            struct engine_request req = {.prompt = ids, .n_prompt = n, .max_tokens = 480, .grammar = g,
                                         .cb = on_event, .user = &o};
            req.sampling = sampler_default_params();
            req.sampling.temperature = r ? 1.0f : 0.0f;
            req.sampling.seed = (uint64_t)r;
            uint64_t id;
            int src = engine_submit(e, &req, &id);
            free(ids);
            if (src) {
                fprintf(stderr, "structured_gen: submit: %s\n", sa_err_str(src));
                rc = 1;
                break;
            }
            pthread_mutex_lock(&o.mu);
            while (!o.done) pthread_cond_wait(&o.cv, &o.mu);
            pthread_mutex_unlock(&o.mu);
            const char *fin = o.last.type == ENGINE_EV_DONE ? engine_finish_name(o.last.finish) : "error";
            json_t *line = json_pack("{s:s, s:i, s:s, s:i, s:s%}", "schema", argv[a], "run", r, "finish", fin,
                                     "tokens", (int)o.last.completion_tokens, "text", o.text, o.n);
            char *js = line ? json_dumps(line, JSON_COMPACT) : NULL;
            if (js) printf("%s\n", js);
            free(js);
            json_decref(line);
            pthread_mutex_destroy(&o.mu);
            pthread_cond_destroy(&o.cv);
        }
        engine_grammar_free(g);
    }
    engine_destroy(e);
    return rc;
}
