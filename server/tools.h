/*
 * tools.h - OpenAI function calling around the chat templates (engine/chat.h
 * defines how each format offers tools and how the model writes a call):
 * the tools' JSON as the template renders it, the grammar that constrains
 * generation when a call is required, and the calls parsed back out of the
 * generated text. jansson lives here, not in the engine.
 *
 * Parsing (tools_parse_output), per format:
 *   chatml, llama2  every "<tool_call>" starts a call whose JSON runs to the
 *                   next "</tool_call>" (or to the end of the text: models
 *                   often stop before it); the content is the text before the
 *                   first "<tool_call>" with trailing whitespace removed.
 *   llama3          the whole text (whitespace and a leading "<|python_tag|>"
 *                   removed) is one or more JSON objects, one after the other;
 *                   the content is then empty.
 * A call is a JSON object {"name": one of the tools' names, "arguments" or
 * "parameters": an object, or a string holding one}. All or nothing: if any
 * call in the text fails these rules, the text has no calls (it is all
 * content), so a client never receives half of what the model wrote. The one
 * exception (chatml, llama2): a last call cut off by the end of the text (no
 * "</tool_call>", its JSON incomplete) after complete ones is dropped and the
 * complete ones are kept (the finish_reason, "length", tells the client).
 *
 * Threads: pure functions; any thread. Returned strings are malloc'd.
 */
#ifndef SA_TOOLS_H
#define SA_TOOLS_H

#include "engine/chat.h"
#include "request.h"

#include <stdbool.h>
#include <stddef.h>

#define TOOLS_MAX_PARALLEL 4 /* calls a "required" grammar allows with parallel_tool_calls */

/* The JSON text of tool t as format f renders it (chat_tools_indent). 0 or SA_ERR_NOMEM. */
int tools_render_json(enum chat_format f, const struct api_tool *t, char **out);

/* The GBNF for r's tool_choice "required" (1 call, up to TOOLS_MAX_PARALLEL
 * with parallel_tool_calls, one call only for llama3 whose format has no
 * separator) or a named function (exactly that call): the format's wrapper
 * around {"name": "<name>", "arguments" (llama3: "parameters"): <the tool's
 * parameters schema, or {} when it has none>}, written exactly in that
 * spacing. *gbnf NULL for any other choice. 0, or the schema.h errors with msg. */
int tools_grammar(enum chat_format f, const struct api_request *r, char **gbnf, char *msg, size_t msg_len);

struct tools_call {
    char *name;
    char *arguments; /* compact JSON text of the arguments object */
};

struct tools_parsed {
    size_t content_len; /* bytes of the text that are content (before the calls) */
    struct tools_call *calls;
    size_t n_calls; /* 0: the whole text is content (content_len = its length) */
};

/* Parse text[0..len) (see the top of this file); names[0..n_names) are the
 * tools offered. 0 (out filled; free with tools_parsed_free) or SA_ERR_NOMEM. */
int tools_parse_output(enum chat_format f, const char *text, size_t len, char *const *names, size_t n_names,
                       struct tools_parsed *out);
void tools_parsed_free(struct tools_parsed *p);

/* Streaming: how many leading bytes of text[0..len) are certainly content and
 * can be sent now; the rest may be (or is) a call and is held until the end.
 * *call_started is set once a call has begun (nothing after it is content).
 * sent: the bytes an earlier call returned for a prefix of this text (0 at
 * first), so each call looks only at what is new: O(new bytes). */
size_t tools_stream_content(enum chat_format f, const char *text, size_t len, size_t sent, bool *call_started);

#endif
