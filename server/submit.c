/*
 * submit.c - POST /v1/completions and /v1/chat/completions turned into engine
 * work (api_int.h): the request parsed, rendered (chat) and tokenized, the
 * Shared Attention plan and re-balancer resolved, then one engine request per
 * choice; the answer is assembled by answer.c as the events come.
 */
#define _DEFAULT_SOURCE
#include "api_int.h"
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int query_cb(void *ctx, const char *key, const char *value)
{
    void **p = ctx;
    return request_query_arg(p[0], key, value, p[1]);
}

/* The conversation of a chat request rendered with the model's template, the
 * tools offered and the messages' tool calls included (tools.h), tokenized. */
static int render_chat(struct api *a, const struct api_request *req, int32_t **ids, size_t *n_ids)
{
    size_t n = req->n_messages, n_calls = 0;
    for (size_t m = 0; m < n; m++) n_calls += req->messages[m].n_tool_calls;
    struct chat_message *msgs = calloc(n, sizeof *msgs);
    struct chat_tool_calls *calls = calloc(n, sizeof *calls);
    struct chat_tool_call *all = calloc(n_calls ? n_calls : 1, sizeof *all);
    char **tools = calloc(req->n_tools ? req->n_tools : 1, sizeof *tools);
    char *prompt = NULL;
    int rc = msgs && calls && all && tools ? 0 : SA_ERR_NOMEM;
    for (size_t m = 0, k = 0; m < n && !rc; m++) {
        const struct api_message *am = &req->messages[m];
        msgs[m] = (struct chat_message){am->role, am->content};
        calls[m] = (struct chat_tool_calls){all + k, am->n_tool_calls};
        for (size_t c = 0; c < am->n_tool_calls; c++, k++)
            all[k] = (struct chat_tool_call){am->tool_calls[c].name, am->tool_calls[c].arguments};
    }
    for (size_t t = 0; t < req->n_tools && !rc; t++) rc = tools_render_json(a->chat, &req->tools[t], &tools[t]);
    if (!rc) rc = chat_render_tools(a->chat, msgs, calls, n, (const char *const *)tools, req->n_tools, true, &prompt);
    if (!rc) rc = engine_tokenize(a->e, prompt, strlen(prompt), true, true, ids, n_ids);
    for (size_t t = 0; tools && t < req->n_tools; t++) free(tools[t]);
    free(tools);
    free(prompt);
    free(all);
    free(calls);
    free(msgs);
    return rc;
}

/* Prompt p of req -> token ids in ids[p] / n_ids[p] (chat: the rendered
 * conversation), and its text for echo. 0, or an SA_ERR_* with err filled
 * when the request is at fault. */
static int tokenize_prompt(struct api *a, const struct api_request *req, size_t p, int32_t **ids, size_t *n_ids,
                           char **echo_text, struct api_error *err)
{
    int rc;
    if (req->kind == REQUEST_CHAT) {
        rc = render_chat(a, req, &ids[p], &n_ids[p]);
        if (rc && rc != SA_ERR_NOMEM)
            request_error(err, "messages", "the messages cannot be rendered with the chat template");
    } else if (req->prompts) {
        rc = engine_tokenize(a->e, req->prompts[p], strlen(req->prompts[p]), true, true, &ids[p], &n_ids[p]);
        if (!rc && req->echo) echo_text[p] = strdup(req->prompts[p]);
    } else {
        n_ids[p] = req->prompt_id_lens[p];
        ids[p] = malloc(n_ids[p] * sizeof **ids);
        if (!ids[p]) return SA_ERR_NOMEM;
        memcpy(ids[p], req->prompt_ids[p], n_ids[p] * sizeof **ids);
        rc = 0;
        if (req->echo) echo_text[p] = engine_detokenize(a->e, ids[p], n_ids[p]);
    }
    if (rc) return rc;
    if (n_ids[p] == 0) {
        request_error(err, "prompt", "the prompt is empty and the model has no BOS token");
        return SA_ERR_INVALID_ARG;
    }
    if (n_ids[p] >= engine_info(a->e)->n_ctx) {
        response_error_from_code(SA_ERR_CONTEXT_FULL, req->kind == REQUEST_CHAT ? "messages" : "prompt", NULL, err);
        snprintf(err->message, sizeof err->message, "the prompt is %zu tokens; the context holds %u", n_ids[p],
                 engine_info(a->e)->n_ctx);
        return SA_ERR_CONTEXT_FULL;
    }
    return 0;
}

/* The request's attention configuration and output constraint: Shared
 * Attention on/off and its plan, the re-balancer, the compiled grammar (or
 * NULL; the caller frees it). 0, or SA_ERR_INVALID_ARG with err naming the
 * field, or SA_ERR_NOMEM. */
struct gen_options {
    bool share;
    struct share_plan plan;
    struct rebalance_params rb;
    struct grammar *grammar;
};
static int resolve_options(struct api *a, const struct api_request *req, struct gen_options *o, struct api_error *err)
{
    o->share = req->share_query >= 0 ? req->share_query == 1
                                     : (req->share_spans ? strcmp(req->share_spans, "off") != 0 : a->cfg->share);
    o->rb = engine_info(a->e)->rebalance_default;
    o->rb.on = req->rebalance_query >= 0 ? req->rebalance_query == 1 : a->cfg->rebalance;
    if (req->rebalance_alpha_set) o->rb.alpha = req->rebalance_alpha;
    if (req->rebalance_tau_set) o->rb.tau = req->rebalance_tau;
    char msg[256] = "";
    if (engine_parse_plan(a->e, req->share_spans ? req->share_spans : a->cfg->share_spans, &o->plan, msg,
                          sizeof msg) != 0) {
        response_error_from_code(SA_ERR_INVALID_ARG, "share_spans", msg, err);
        return SA_ERR_INVALID_ARG;
    }
    char *tools_gbnf = NULL; /* a required tool call: the calls are the grammar (tools.h) */
    int rc = tools_grammar(a->chat, req, &tools_gbnf, msg, sizeof msg);
    if (rc == SA_ERR_NOMEM) return rc;
    if (rc) { /* request.c converted every schema already: only the size can fail here */
        response_error_from_code(SA_ERR_INVALID_ARG, "tools", msg, err);
        return SA_ERR_INVALID_ARG;
    }
    const char *text = tools_gbnf ? tools_gbnf : req->grammar;
    const char *param = tools_gbnf ? "tools" : req->grammar_param;
    if (!text) return 0;
    rc = engine_grammar_compile(a->e, text, strlen(text), &o->grammar, msg, sizeof msg);
    free(tools_gbnf);
    if (rc == SA_ERR_INVALID_ARG || rc == SA_ERR_TOO_LARGE) {
        response_error_from_code(SA_ERR_INVALID_ARG, param, msg, err);
        return SA_ERR_INVALID_ARG;
    }
    return rc;
}

/* The engine request of choice k (0-based over every prompt's n choices). */
static void fill_engine_request(const struct api *a, const struct api_request *req, const struct gen_options *o,
                                const struct sampler_bias *bias, uint64_t seed, size_t k, struct engine_request *er)
{
    er->max_tokens = req->max_tokens;
    er->share = o->share;
    er->plan = o->plan;
    er->rebalance = o->rb;
    /* max_tokens 0 (completions, only with echo): the prompt alone, scored when logprobs asks */
    er->task = req->kind == REQUEST_EMBEDDING ? ENGINE_TASK_EMBED
               : req->max_tokens == 0         ? ENGINE_TASK_SCORE
                                              : ENGINE_TASK_GENERATE;
    er->pooling = req->pooling ? ENGINE_POOLING_LAST : ENGINE_POOLING_MEAN;
    er->grammar = o->grammar;
    er->sampling = sampler_default_params();
    er->sampling.temperature = req->temperature;
    er->sampling.top_k = req->top_k;
    er->sampling.top_p = req->top_p;
    er->sampling.min_p = req->min_p;
    er->sampling.presence_penalty = req->presence_penalty;
    er->sampling.frequency_penalty = req->frequency_penalty;
    er->sampling.repeat_penalty = req->repeat_penalty;
    er->sampling.repeat_last_n = (int32_t)a->cfg->repeat_last_n;
    er->sampling.seed = seed + k;
    er->sampling.n_logprobs = req->logprobs > 0 ? req->logprobs : 0;
    er->sampling.bias = bias;
    er->sampling.n_bias = (int32_t)req->n_logit_bias;
    er->sampling.ignore_eos = req->ignore_eos;
    er->sampling.min_tokens = (int32_t)req->min_tokens;
    for (size_t i = 0; i < req->n_stop && i < ENGINE_MAX_STOP; i++) er->stop[i] = req->stop[i];
    er->n_stop = req->n_stop < ENGINE_MAX_STOP ? req->n_stop : ENGINE_MAX_STOP;
    memcpy(er->stop_ids, req->stop_token_ids, req->n_stop_token_ids * sizeof *er->stop_ids);
    er->n_stop_ids = req->n_stop_token_ids;
}

/* A new job for req: its id, its options, one job_seq per choice. NULL when out of memory. */
static struct job *job_new(struct api *a, struct http_request *r, const struct api_request *req,
                           enum metrics_endpoint ep, const struct gen_options *o, size_t n_prompts)
{
    enum request_kind kind = req->kind;
    struct job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->api = a;
    j->http = r;
    j->born = api__now_s() - http_age_s(r);
    j->kind = kind;
    j->ep = ep;
    j->stream = req->stream;
    j->include_usage = req->include_usage;
    j->share = o->share;
    j->rebalance = o->rb.on;
    j->logprobs = req->logprobs;
    j->base64 = req->base64;
    j->grammar_param = req->grammar_param;
    if (req->tool_choice == TOOL_CHOICE_REQUIRED || req->tool_choice == TOOL_CHOICE_NAMED) j->grammar_param = "tools";
    if (req->tool_choice != TOOL_CHOICE_NONE) { /* the output is parsed for calls (answer.c) */
        j->tool_names = calloc(req->n_tools, sizeof *j->tool_names);
        for (size_t t = 0; j->tool_names && t < req->n_tools; t++) {
            if (!(j->tool_names[t] = strdup(req->tools[t].name))) break;
            j->n_tools = t + 1;
        }
        if (j->n_tools != req->n_tools) {
            api__job_free_tools(j);
            free(j);
            return NULL;
        }
    }
    j->model = strdup(req->model ? req->model : a->model_name);
    j->created = (int64_t)time(NULL);
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx",
             kind == REQUEST_CHAT ? "chatcmpl" : kind == REQUEST_EMBEDDING ? "embd" : "cmpl",
             (unsigned long long)j->created, (unsigned long long)(++a->id_counter & 0xffffff));
    j->n_seqs = n_prompts * req->n;
    j->seqs = calloc(j->n_seqs, sizeof *j->seqs);
    if (!j->seqs || !j->model) {
        free(j->seqs);
        free(j->model);
        api__job_free_tools(j);
        free(j);
        return NULL;
    }
    return j;
}

void api__handle_generate(struct api *a, struct http_request *r, enum request_kind kind)
{
    enum metrics_endpoint ep = kind == REQUEST_CHAT        ? METRICS_EP_CHAT
                               : kind == REQUEST_EMBEDDING ? METRICS_EP_EMBEDDINGS
                                                           : METRICS_EP_COMPLETIONS;
    if (a->draining) {
        api__send_http_error(a, r, ep, RESPONSE_HTTP_UNAVAILABLE, NULL, "the server is shutting down");
        return;
    }
    struct api_request req;
    struct api_error err = {0};
    struct gen_options opt = {0}; /* opt.grammar is freed at out */
    struct job *j = NULL;
    request_init(&req);
    void *qctx[2] = {&req, &err};
    size_t blen;
    const char *body = http_body(r, &blen);
    if (http_query_each(r, query_cb, qctx) != 0 || request_parse(kind, body, blen, &a->limits, &req, &err) != 0) {
        api__send_error(a, r, ep, &err);
        request_free(&req);
        return;
    }
    /* prompts -> token ids, then the options every choice shares */
    size_t n_prompts = kind == REQUEST_CHAT ? 1 : req.n_prompts;
    int32_t **ids = calloc(n_prompts, sizeof *ids);
    size_t *n_ids = calloc(n_prompts, sizeof *n_ids);
    char **echo_text = calloc(n_prompts, sizeof *echo_text);
    int rc = (!ids || !n_ids || !echo_text) ? SA_ERR_NOMEM : 0;
    for (size_t p = 0; p < n_prompts && !rc; p++) rc = tokenize_prompt(a, &req, p, ids, n_ids, echo_text, &err);
    if (!rc) rc = resolve_options(a, &req, &opt, &err);
    if (!rc && !(j = job_new(a, r, &req, ep, &opt, n_prompts))) rc = SA_ERR_NOMEM;
    if (rc) {
        if (rc == SA_ERR_NOMEM || err.status == 0) response_error_from_code(rc, NULL, NULL, &err);
        api__send_error(a, r, ep, &err);
        goto out;
    }
    /* the job: n choices per prompt */
    j->refs = 1; /* the HTTP side */
    http_set_user(r, j);
    for (size_t p = 0, k = 0; p < n_prompts; p++)
        for (uint32_t c = 0; c < req.n; c++, k++) {
            struct job_seq *s = &j->seqs[k];
            s->job = j;
            s->index = (uint32_t)k;
            s->prompt_index = p;
            s->prompt_tokens = (uint32_t)n_ids[p];
            if (kind == REQUEST_EMBEDDING && !(s->embd = calloc(engine_info(a->e)->dim, sizeof *s->embd)))
                rc = SA_ERR_NOMEM;
            if (echo_text[p]) api__append_text(s, echo_text[p], strlen(echo_text[p]));
            s->echo_len = s->len;
            s->prompt_lp = req.echo && req.logprobs >= 0 && kind == REQUEST_COMPLETION;
        }
    /* the sampler copies the bias at submit: one array for every choice, freed below */
    struct sampler_bias *bias = req.n_logit_bias ? malloc(req.n_logit_bias * sizeof *bias) : NULL;
    for (size_t i = 0; bias && i < req.n_logit_bias; i++)
        bias[i] = (struct sampler_bias){req.logit_bias[i].id, req.logit_bias[i].bias};
    if (req.n_logit_bias && !bias) rc = SA_ERR_NOMEM;
    uint64_t seed = req.seed_set ? req.seed : api__pick_seed(a);
    for (size_t k = 0; k < j->n_seqs && !rc; k++) {
        struct job_seq *s = &j->seqs[k];
        struct engine_request er = {.prompt = ids[s->prompt_index], .n_prompt = n_ids[s->prompt_index],
                                    .cb = api__on_engine_event, .user = s};
        fill_engine_request(a, &req, &opt, bias, seed, k, &er);
        er.prompt_logprobs = s->prompt_lp;
        rc = engine_submit(a->e, &er, &s->engine_id);
        if (rc) break;
        s->submitted = true;
        j->refs++;
        j->remaining++;
    }
    free(bias);
    if (j->remaining) { /* link even if a later submit failed: the events still come */
        j->next = a->jobs;
        if (a->jobs) a->jobs->prev = j;
        a->jobs = j;
        a->n_jobs++;
    }
    if (rc) {
        response_error_from_code(rc, rc == SA_ERR_CONTEXT_FULL ? "prompt" : NULL, NULL, &err);
        j->failed = true;
        j->err = err;
        api__job_cancel_all(j);
        if (j->remaining == 0) api__send_error(a, r, ep, &err); /* else answered when the cancelled ones end */
        goto out;
    }
    if (j->stream) {
        http_stream_begin(r, 200);
        j->stream_started = true;
        /* echo: the first chunk is the prompt (with its logprobs once scored: answer.c) */
        for (size_t k = 0; k < j->n_seqs; k++)
            if (!j->seqs[k].prompt_lp) api__answer_echo(&j->seqs[k]);
    }
out:
    for (size_t p = 0; p < n_prompts; p++) {
        if (ids) free(ids[p]);
        if (echo_text) free(echo_text[p]);
    }
    free(ids);
    free(n_ids);
    free(echo_text);
    engine_grammar_free(opt.grammar); /* each submitted sequence holds its own reference */
    request_free(&req);
}
