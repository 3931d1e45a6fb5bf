#!/usr/bin/env bash
# test_layering.sh - the layering the headers promise: server/ includes only the
# engine's public headers (engine.h and the few public-by-design ones below,
# each saying so in its own comment), and engine/ includes nothing of server/,
# config/ or the HTTP libraries. A new include of an engine-internal header
# from server/ fails here; grow engine.h instead (see its one-shot tools block).
set -u
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
# engine.h: the API (text, vision jobs, one-shot model tools); errors.h, log.h,
# defaults.h: error list, log sink, built-in defaults; phidnn.h: the vision model;
# utf8.h: UTF-8 well-formedness; chat.h: chat prompt formats.
public="engine.h errors.h log.h defaults.h phidnn.h utf8.h chat.h"
n=0
while IFS=: read -r file line inc; do
    h=$(sed -E 's/.*"engine\/([^"]+)".*/\1/' <<<"$inc")
    n=$((n + 1))
    case " $public " in
    *" $h "*) ;;
    *) bad "$file:$line includes engine/$h, which is internal to the engine" ;;
    esac
done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"engine/' server/*.c server/*.h)
[ "$n" -gt 0 ] || bad "found no engine includes in server/ at all (is this the repository root?)"
[ "$fail" -eq 0 ] && ok "server/: $n includes of engine headers, all public ($public)"
for h in $public; do [ -f "engine/$h" ] || bad "public header engine/$h does not exist"; done
if hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](server/|config/|microhttpd|uv\.h|\.\./)' engine/*.c engine/*.h); then
    bad "engine/ includes server, config or HTTP headers: $hits"
else
    ok "engine/ includes no server/, config/, libmicrohttpd or libuv header"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
