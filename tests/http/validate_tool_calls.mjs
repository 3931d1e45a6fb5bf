// validate_tool_calls.mjs - checks a saserve chat answer that must be tool calls
// (tool_choice "required" or a named function): finish_reason "tool_calls", every
// call {id "call_...", type "function", function {name, arguments}} names one of
// the tools, and its arguments JSON.parse and validate with ajv (pinned in
// package.json, a real JSON-schema validator) against that tool's parameters.
// Usage: node validate_tool_calls.mjs TOOLS_JSON_FILE ANSWER_FILE [NAME]
//   ANSWER_FILE: a chat.completion body, or an SSE stream of chunks (starts with
//   "data:"), whose delta.tool_calls are accumulated by index as OpenAI's
//   clients do (arguments strings concatenated). NAME: every call must be it.
// Prints what it found; exit 0 when valid, 1 otherwise.
import fs from "node:fs";
import Ajv from "ajv";

const [toolsFile, answerFile, onlyName] = process.argv.slice(2);
const tools = JSON.parse(fs.readFileSync(toolsFile, "utf8"));
const raw = fs.readFileSync(answerFile, "utf8");
const ajv = new Ajv({ strict: false, allErrors: true });
const fail = (why) => { console.log(`FAIL ${why}`); process.exit(1); };

let calls = [], finish = null, content = null;
if (/^data: /m.test(raw)) {
  const acc = [];
  for (const line of raw.split("\n")) {
    if (!line.startsWith("data: {")) continue;
    const ch = JSON.parse(line.slice(6));
    for (const c of ch.choices ?? []) {
      if (c.finish_reason) finish = c.finish_reason;
      if (c.delta?.content) content = (content ?? "") + c.delta.content;
      for (const tc of c.delta?.tool_calls ?? []) {
        if (!Number.isInteger(tc.index)) fail(`delta.tool_calls entry without an integer index: ${JSON.stringify(tc)}`);
        const a = (acc[tc.index] ??= { id: "", type: "", function: { name: "", arguments: "" } });
        if (tc.id) a.id += tc.id;
        if (tc.type) a.type = tc.type;
        if (tc.function?.name) a.function.name += tc.function.name;
        if (tc.function?.arguments) a.function.arguments += tc.function.arguments;
      }
    }
  }
  calls = acc;
} else {
  const d = JSON.parse(raw);
  const c = d.choices?.[0];
  if (!c) fail(`no choice: ${raw.slice(0, 300)}`);
  finish = c.finish_reason;
  calls = c.message?.tool_calls ?? [];
  content = c.message?.content;
}
if (finish !== "tool_calls") fail(`finish_reason ${finish}, content ${JSON.stringify(content)?.slice(0, 200)}`);
if (!calls.length) fail("no tool calls");
for (const [i, c] of calls.entries()) {
  if (!c || !/^call_[A-Za-z0-9]+$/.test(c.id) || c.type !== "function") fail(`call ${i} id/type: ${JSON.stringify(c)}`);
  const tool = tools.find((t) => t.function.name === c.function.name);
  if (!tool) fail(`call ${i} names ${c.function.name}, not a tool`);
  if (onlyName && c.function.name !== onlyName) fail(`call ${i} names ${c.function.name}, not ${onlyName}`);
  let args;
  try { args = JSON.parse(c.function.arguments); } catch (e) { fail(`call ${i} arguments do not parse: ${e.message}`); }
  const schema = tool.function.parameters ?? { type: "object", additionalProperties: false };
  const v = ajv.compile(schema);
  if (!v(args)) fail(`call ${i} arguments ${c.function.arguments} invalid: ${ajv.errorsText(v.errors)}`);
  console.log(`call ${i}: ${c.function.name}(${c.function.arguments}) valid`);
}
if (new Set(calls.map((c) => c.id)).size !== calls.length) fail("call ids are not unique");
console.log(`PASS ${calls.length} call(s) valid`);
