// validate_structured.mjs - reads structured_gen's JSON lines on stdin and
// checks every completed output with ajv (a real JSON-schema validator,
// pinned in package.json): it must parse with JSON.parse and validate against
// its schema ("-": json_object, any JSON object). Outputs cut by max_tokens
// ("length") are counted, not validated; an "error" finish fails.
// Prints one line per schema, then "N valid, M failed"; exit 1 on any failure
// or when fewer than half the runs of a schema completed (json_object is
// exempt: stories260K writes story text into its unbounded strings until
// max_tokens, so its runs rarely complete; test_grammar checks its prefixes).
import fs from "node:fs";
import readline from "node:readline";
import Ajv from "ajv";

const ajv = new Ajv({ strict: false, allErrors: true });
const validators = new Map();
const stats = new Map();
let valid = 0, failed = 0;
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const r = JSON.parse(line);
  const st = stats.get(r.schema) ?? { runs: 0, done: 0, bad: 0 };
  stats.set(r.schema, st);
  st.runs++;
  if (r.finish === "length") continue;
  st.done++;
  const fail = (why) => { failed++; st.bad++; console.log(`FAIL ${r.schema} run ${r.run}: ${why}: ${JSON.stringify(r.text)}`); };
  if (r.finish !== "stop") { fail(`finish ${r.finish}`); continue; }
  let x;
  try { x = JSON.parse(r.text); } catch (e) { fail(`does not parse (${e.message})`); continue; }
  if (r.schema === "-") {
    if (x === null || typeof x !== "object" || Array.isArray(x)) { fail("not an object"); continue; }
  } else {
    if (!validators.has(r.schema)) validators.set(r.schema, ajv.compile(JSON.parse(fs.readFileSync(r.schema, "utf8"))));
    const v = validators.get(r.schema);
    if (!v(x)) { fail(`invalid: ${ajv.errorsText(v.errors)}`); continue; }
  }
  valid++;
}
let low = 0;
for (const [schema, st] of stats) {
  console.log(`${st.bad ? "FAIL" : "PASS"} ${schema}: ${st.runs} runs, ${st.done} complete, ${st.done - st.bad} valid`);
  if (schema !== "-" && st.done * 2 < st.runs) { low++; console.log(`FAIL ${schema}: fewer than half the runs completed`); }
}
console.log(`${valid} valid, ${failed + low} failed`);
process.exit(failed + low || stats.size === 0 ? 1 : 0);
