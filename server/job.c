/*
 * job.c - a generation request's job (api_int.h): its references (one for the
 * HTTP side, one per submitted engine sequence) and the engine -> loop event
 * queue. The step thread only queues events (api__on_engine_event); the loop
 * drains them (api__drain_events) and hands each to answer.c.
 */
#include "api_int.h"

#include <stdlib.h>
#include <string.h>

void api__seq_free_contents(struct job_seq *s)
{
    free(s->text);
    free(s->embd);
    for (size_t i = 0; i < s->n_lps; i++) {
        free((char *)(uintptr_t)s->lps[i].token);
        for (size_t k = 0; k < s->lps[i].n_top; k++) free((char *)(uintptr_t)s->lps[i].top[k].token);
        free((void *)(uintptr_t)s->lps[i].top);
    }
    free(s->lps);
    tools_parsed_free(&s->tools);
    free(s->calls);
    free(s->call_ids);
}

void api__job_free_tools(struct job *j)
{
    for (size_t i = 0; i < j->n_tools; i++) free(j->tool_names[i]);
    free(j->tool_names);
    j->tool_names = NULL;
    j->n_tools = 0;
}

void api__job_unref(struct job *j)
{
    if (--j->refs > 0) return;
    for (size_t i = 0; i < j->n_seqs; i++) api__seq_free_contents(&j->seqs[i]);
    free(j->seqs);
    free(j->model);
    api__job_free_tools(j);
    free(j);
}

void api__job_unlink(struct job *j)
{
    struct api *a = j->api;
    if (j->prev)
        j->prev->next = j->next;
    else if (a->jobs == j)
        a->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    j->prev = j->next = NULL;
    a->n_jobs--;
}

void api__job_cancel_all(struct job *j)
{
    for (size_t i = 0; i < j->n_seqs; i++)
        if (j->seqs[i].submitted && !j->seqs[i].done) engine_cancel(j->api->e, j->seqs[i].engine_id);
}

/* ---- engine -> loop ---- */

/* Allocation in the event path (step thread), with the fault-injection hook. */
static void *ev_alloc(struct api *a, size_t n)
{
    if (a->fail_every && ++a->ev_allocs % a->fail_every == 0) return NULL;
    return malloc(n);
}

void api__on_engine_event(void *user, const struct engine_event *ev)
{
    struct job_seq *s = user;
    struct api *a = s->job->api;
    struct ev_item *it;
    if (ev->type == ENGINE_EV_TOKEN || ev->type == ENGINE_EV_PROMPT) {
        it = ev_alloc(a, sizeof *it);
        char *text = ev->text_len ? ev_alloc(a, ev->text_len) : NULL;
        if (!it || (ev->text_len && !text)) {
            free(it);
            free(text);
            s->token_lost = true;
            return;
        }
        memset(it, 0, sizeof *it);
        if (text) memcpy(text, ev->text, ev->text_len);
        it->text = text;
    } else {
        if (ev->embedding && s->embd) { /* copied here: the engine's buffer lives only during this call */
            s->n_embd = ev->n_embd < engine_info(a->e)->dim ? ev->n_embd : engine_info(a->e)->dim;
            memcpy(s->embd, ev->embedding, s->n_embd * sizeof *s->embd);
        }
        it = &s->final; /* never fails: the last event of the sequence */
        memset(it, 0, sizeof *it);
        it->embedded = true;
    }
    it->seq = s;
    it->ev = *ev;
    it->ev.text = NULL;
    pthread_mutex_lock(&a->mu);
    if (a->q_tail)
        a->q_tail->next = it;
    else
        a->q_head = it;
    a->q_tail = it;
    pthread_mutex_unlock(&a->mu);
    uv_async_send(&a->async);
}

/* One event on the loop: a token goes to answer.c; DONE or ERROR ends the sequence. */
static void handle_event(struct ev_item *it)
{
    struct job_seq *s = it->seq;
    struct job *j = s->job;
    const struct engine_event *ev = &it->ev;
    if (ev->type == ENGINE_EV_TOKEN) {
        api__answer_token(s, ev, it->text);
        return;
    }
    if (ev->type == ENGINE_EV_PROMPT) {
        api__answer_prompt_token(s, ev);
        return;
    }
    /* DONE or ERROR: this sequence is over */
    s->done = true;
    if (ev->type == ENGINE_EV_ERROR) {
        if (!j->failed && j->grammar_param && (ev->error == SA_ERR_INVALID_ARG || ev->error == SA_ERR_TOO_LARGE)) {
            /* the request's own grammar ended in a state no token continues (engine.h) */
            response_error_from_code(SA_ERR_INVALID_ARG, j->grammar_param,
                                     ev->error == SA_ERR_TOO_LARGE
                                         ? "the grammar's matcher exceeded its bounds while generating"
                                         : "the grammar reached a point that no token of this model's vocabulary "
                                           "can continue",
                                     &j->err);
            j->failed = true;
            api__job_cancel_all(j);
        } else if (!j->failed) {
            response_error_from_code(ev->error, NULL, NULL, &j->err);
            j->failed = true;
            api__job_cancel_all(j);
        }
    } else if (s->token_lost && !j->failed) {
        response_error_from_code(SA_ERR_NOMEM, NULL, "out of memory while streaming the answer", &j->err);
        j->failed = true;
        api__job_cancel_all(j);
    } else {
        s->finish = engine_finish_name(ev->finish);
        s->cancelled = ev->finish == ENGINE_FINISH_CANCELLED && !j->client_gone;
        s->prompt_tokens = ev->prompt_tokens;
        s->completion_tokens = ev->completion_tokens;
        s->cached_tokens = ev->cached_tokens;
        s->cache = ev->cache;
        s->timings = ev->timings;
        if (!s->cancelled && api__answer_tools(s) != 0 && !j->failed) {
            response_error_from_code(SA_ERR_NOMEM, NULL, "out of memory while parsing the tool calls", &j->err);
            j->failed = true;
            api__job_cancel_all(j);
        }
    }
    j->remaining--;
    if (j->stream && j->http && !j->failed && ev->type == ENGINE_EV_DONE && !s->cancelled) api__answer_seq_done(s);
    if (j->remaining == 0) {
        api__answer_job(j);
        api__job_unlink(j);
    }
    api__job_unref(j);
}

void api__drain_events(uv_async_t *h)
{
    struct api *a = h->data;
    pthread_mutex_lock(&a->mu);
    struct ev_item *it = a->q_head;
    a->q_head = a->q_tail = NULL;
    pthread_mutex_unlock(&a->mu);
    while (it) {
        struct ev_item *next = it->next;
        bool embedded = it->embedded;
        char *text = it->text;
        handle_event(it); /* may free the job, and with it an embedded item */
        free(text);
        if (!embedded) free(it);
        it = next;
    }
    api__v2_drain(a);
}

bool api__job_closed(struct api *a, struct http_request *r, bool client_gone)
{
    (void)a;
    struct job *j = http_user(r);
    if (!j) return false;
    j->http = NULL;
    if (client_gone && j->remaining) {
        j->client_gone = true;
        api__job_cancel_all(j);
    }
    api__job_unref(j);
    return true;
}
