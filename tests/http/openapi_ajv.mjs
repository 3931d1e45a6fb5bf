// openapi_ajv.mjs - every schema under components.schemas of openapi.yaml
// compiles, unchanged, in ajv (a real JSON-schema validator), in strict mode.
//
// openapi.yaml is OpenAPI 3.0.3, whose Schema Object is a JSON Schema subset
// (draft-04/Wright-00 era) with extra keywords. Ajv's default dialect is
// draft-07, which agrees with that subset everywhere except where 3.0 kept the
// draft-04 form: a boolean exclusiveMinimum/exclusiveMaximum (draft-07: a
// number). A schema that compiles here therefore means the same to OpenAPI
// 3.0 tools and to JSON-Schema tools, so the spec writes "> 0" as
// `not: {type: number, maximum: 0}`, not `exclusiveMinimum: true`, and a
// boolean exclusiveMinimum fails this check (strict mode: "exclusiveMinimum
// must be number"). OpenAPI 3.0's own keywords are accepted as they are:
// `nullable` is built into ajv (and, like OpenAPI 3.0.3, ajv requires a `type`
// beside it), `discriminator` by ajv's option, and the annotations `example`,
// `externalDocs`, `xml` and the x-* extensions used in the file are declared
// as annotation keywords (ajv.addKeyword: no validation). Nothing else is
// relaxed: an unknown keyword, a bad type, an unresolved $ref fail.
//
// Usage: node tests/http/openapi_ajv.mjs SPEC.json   (the YAML converted to
// JSON by the caller, tests/scripts/test_openapi_lint.sh: Node has no YAML
// parser among our pinned packages). Prints PASS/FAIL per schema and a summary;
// exit 1 if any failed.
import fs from "node:fs";
import Ajv from "ajv";

const doc = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const ajv = new Ajv({ strict: true, allErrors: true, discriminator: true, validateFormats: false });
// annotations of the OpenAPI 3.0 Schema Object (no validation meaning)
for (const k of ["example", "externalDocs", "xml"]) ajv.addKeyword({ keyword: k });
// x-* extensions present in the schemas (an unknown one is reported by strict mode)
const ext = new Set();
(function walk(n) {
  if (Array.isArray(n)) n.forEach(walk);
  else if (n && typeof n === "object")
    for (const [k, v] of Object.entries(n)) {
      if (k.startsWith("x-")) ext.add(k);
      walk(v);
    }
})(doc.components?.schemas ?? {});
for (const k of ext) ajv.addKeyword({ keyword: k });

// the components as one resource, so `#/components/schemas/X` resolves as in the spec
const ID = "saserve-openapi.json";
ajv.addKeyword({ keyword: "components" }); // the container below, not a schema keyword
ajv.addSchema({ $id: ID, components: doc.components });
let pass = 0, fail = 0;
for (const name of Object.keys(doc.components.schemas)) {
  try {
    // compiled in place (its $refs are relative to the spec's root), with all it references
    ajv.compile({ $ref: `${ID}#/components/schemas/${name}` });
    pass++;
    console.log(`PASS ajv compiles components.schemas.${name}`);
  } catch (e) {
    fail++;
    console.log(`FAIL ajv compiles components.schemas.${name}: ${e.message.split("\n")[0]}`);
  }
}
console.log(`ajv: ${pass} schemas compiled, ${fail} failed`);
process.exit(fail ? 1 : 0);
