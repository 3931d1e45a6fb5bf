/*
 * chat.h - render a list of chat messages into a prompt in the model's chat
 * format. Plain strings in, one malloc'd string out: no JSON, no HTTP, no
 * tokenizer. Roles are "system", "user", "assistant" and "tool" (a tool's
 * result); an assistant message may carry tool calls (OpenAI function
 * calling), and a list of tools may be offered to the model.
 *
 * The formats (BOS is never written: the tokenizer adds it):
 *
 *   llama2  The Llama-2 chat template. Each user turn is
 *             [INST] {user} [/INST]
 *           and every user turn after the first output is preceded by <s>.
 *           Each assistant turn is " {assistant} </s>". System messages are
 *           folded into the next user turn:
 *             [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]
 *           (several system messages in a row are joined with "\n"; a system
 *           message with no user turn after it is rendered as a user turn with
 *           empty text). As in the reference template (content.strip()), the
 *           text inside [INST] ... [/INST] and the assistant text are stripped
 *           of leading and trailing whitespace. The model continues right
 *           after " [/INST]", so add_generation_prompt adds nothing.
 *             system S, user U1, assistant A1, user U2 ->
 *             "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]"
 *   chatml  "<|im_start|>{role}\n{content}<|im_end|>\n" per message, content
 *           verbatim; generation prompt "<|im_start|>assistant\n".
 *   llama3  "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
 *           per message, content stripped of leading and trailing whitespace
 *           (the reference template's "| trim"); BOS <|begin_of_text|> is the
 *           tokenizer's; generation prompt
 *           "<|start_header_id|>assistant<|end_header_id|>\n\n".
 *
 * Tools (chat_render_tools). Each tool is given as its JSON text, already
 * serialised by the caller the way the format's reference template does
 * (chat_tools_indent: 0 = one line with ", " and ": " separators, Python's
 * json.dumps / Jinja tojson; 4 = tojson(indent=4)). A tool call is a name
 * (the caller checks it is [A-Za-z0-9_-]+, so it needs no escaping) and its
 * arguments as JSON text (an object, written verbatim). How each format
 * offers the tools, writes calls and results, and what the model is asked to
 * answer with (chat_tool_call_open / _close / _arguments_key give the call's
 * wrapper for parsers and grammars):
 *
 *   chatml  Hermes / Qwen2.5 convention. A first system message is written as
 *           "<|im_start|>system
" + (the first system message's content +
 *           "

", when there is one) + TOOLS + "<|im_end|>
", where TOOLS is
 *             "# Tools

You may call one or more functions to assist with the
 *             user query.

You are provided with function signatures within
 *             <tools></tools> XML tags:
<tools>" + ("
" + tool) per tool +
 *             "
</tools>

For each function call, return a json object with
 *             function name and arguments within <tool_call></tool_call> XML
 *             tags:
<tool_call>
{"name": <function-name>, "arguments":
 *             <args-json-object>}
</tool_call>"
 *           (Qwen2.5's default system text when none is given is not added).
 *           An assistant message with calls: "<|im_start|>assistant" + ("
" +
 *           content when not empty) + per call "
<tool_call>
{"name": "N",
 *           "arguments": ARGS}
</tool_call>" + "<|im_end|>
". Consecutive
 *           tool messages form one user message: "<|im_start|>user" + per
 *           message "
<tool_response>
" + content + "
</tool_response>" +
 *           "<|im_end|>
". The model calls with
 *           "<tool_call>
{"name": ..., "arguments": {...}}
</tool_call>".
 *   llama3  Llama 3.1 JSON tool calling (tools in the first user message): that
 *           message's text becomes "Given the following functions, please
 *           respond with a JSON for a function call with its proper arguments
 *           that best answers the given prompt.

Respond in the format
 *           {"name": function name, "parameters": dictionary of argument name
 *           and its value}.Do not use variables.

" + (tool + "

") per tool
 *           (indent 4) + the user's text (stripped). An assistant message with
 *           calls holds only the calls, {"name": "N", "parameters": ARGS},
 *           one per line (its content is dropped, as the reference template
 *           does); a tool message is an "ipython" turn with the content
 *           verbatim. The model calls with a bare JSON object
 *           {"name": ..., "parameters": {...}} as its whole answer.
 *   llama2  No convention exists; saserve's generic one: the chatml TOOLS text
 *           joins the system text of the first user turn (after the system
 *           messages and "

"), calls are written and expected as in chatml
 *           ("<tool_call>
{...}
</tool_call>", after the assistant's content
 *           and "
"), and consecutive tool messages form one user turn of
 *           "<tool_response>
" + content + "
</tool_response>" blocks joined
 *           by "
".
 * Tool calls and tool messages render the same whether or not tools are
 * offered (n_tools 0).
 *
 * The markers (<s>, [INST], <|im_start|>, ...) are plain text here. Turning
 * them into special tokens is the tokenizer's job (parse_special); message
 * text that itself contains such markers is not escaped by this module.
 *
 * All functions are pure and may be called from any thread.
 *
 * Public: the server renders /v1/chat/completions prompts with it (server/submit.c)
 * and tokenizes the result with engine_tokenize (engine.h); it holds no engine state.
 */
#ifndef SA_CHAT_H
#define SA_CHAT_H

#include <stdbool.h>
#include <stddef.h>

enum chat_format { CHAT_FORMAT_LLAMA2 = 1, CHAT_FORMAT_CHATML, CHAT_FORMAT_LLAMA3 };

/* A tool call of an assistant message; strings borrowed. */
struct chat_tool_call {
    const char *name;      /* [A-Za-z0-9_-]+ (the caller checks) */
    const char *arguments; /* JSON text of the arguments object */
};

/* One message; both strings are borrowed (NUL-terminated, never freed here). */
struct chat_message {
    const char *role;    /* "system", "user", "assistant" or "tool" */
    const char *content; /* "" for an assistant message with only tool calls */
};

/* The tool calls of one message (n 0 = none; only assistant messages have calls). */
struct chat_tool_calls {
    const struct chat_tool_call *calls; /* [n] */
    size_t n;
};

/*
 * Choose the format. A non-empty name ("llama2", "chatml", "llama3") wins;
 * an unknown name gives SA_ERR_INVALID_ARG. With no name (NULL or ""), the
 * GGUF tokenizer.chat_template text decides: it contains "<|im_start|>" ->
 * chatml, else "<|start_header_id|>" -> llama3, else "[INST]" -> llama2; with
 * no template or none of these, llama2. Returns 0 and sets *out.
 */
int chat_format_pick(const char *name, const char *gguf_template, enum chat_format *out);

/* "llama2", "chatml", "llama3"; "unknown" for any other value. Static string. */
const char *chat_format_name(enum chat_format f);

/*
 * Render msgs[0..n) in format f; with add_generation_prompt the assistant
 * header that starts the model's reply is appended (chatml, llama3).
 * On success returns 0 and *out is a malloc'd NUL-terminated prompt that the
 * caller frees. Errors (with *out set to NULL): SA_ERR_INVALID_ARG for n == 0,
 * an unknown format or role, or a NULL role/content; SA_ERR_NOMEM.
 */
int chat_render(enum chat_format f, const struct chat_message *msgs, size_t n, bool add_generation_prompt,
                char **out);

/* chat_render with the tool calls of each message (calls[i] for msgs[i]; calls
 * NULL = none) and tools[0..n_tools) offered (each a JSON text, see the top of
 * this file; n_tools 0 = none). Also SA_ERR_INVALID_ARG for a NULL tool, or
 * tool calls on a message that is not the assistant's or with a NULL string. */
int chat_render_tools(enum chat_format f, const struct chat_message *msgs, const struct chat_tool_calls *calls,
                      size_t n, const char *const *tools, size_t n_tools, bool add_generation_prompt, char **out);

/* The indent the format's tools are serialised with: 0 (one line) or 4. */
int chat_tools_indent(enum chat_format f);
/* How the model writes one call: open + {"name": "N", "<key>": ARGS} + close.
 * chatml, llama2: "<tool_call>\n", "\n</tool_call>", "arguments"; llama3: "", "",
 * "parameters". Static strings. */
const char *chat_tool_call_open(enum chat_format f);
const char *chat_tool_call_close(enum chat_format f);
const char *chat_tool_arguments_key(enum chat_format f);

#endif
