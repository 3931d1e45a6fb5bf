-- completions.lua - wrk script of the fault suite (tests/faults/faults.py).
--
-- T1 (soak): a mix of POST /v1/completions, 50 % streamed, ?share=on|off,
-- max_tokens 1..64, several prompts. After FAULTS_STOP_AT (unix seconds) the
-- script sends only GET /v1/models, so every completion it started has ended
-- before wrk's -d deadline cuts the connections: the completion counts then
-- reconcile exactly with /metrics.
-- T10 (flood): FAULTS_PATH=/v1/models sends only GET FAULTS_PATH.
--
-- Every response is classified (completion / models / other) and checked:
-- a 200 completion must be complete (JSON with finish_reason, or SSE ending
-- with data: [DONE] after a finish_reason or an error event); a 503 must carry
-- Retry-After. done() prints "FAULTS key value" lines for the driver.

local stop_at = tonumber(os.getenv("FAULTS_STOP_AT") or "0") or 0
local only_path = os.getenv("FAULTS_PATH")
local threads = {}

local prompts = {
    "Once upon a time",
    "The little dog",
    "Lily and Ben went to the park. They",
    "One day, a girl named Sue found a big red ball. She",
}

function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    math.randomseed(os.time() * 1000 + tid * 7919)
    c = {}
end

local function bump(k, n)
    c[k] = (c[k] or 0) + (n or 1)
end

function request()
    if only_path then
        return wrk.format("GET", only_path)
    end
    if stop_at > 0 and os.time() >= stop_at then
        return wrk.format("GET", "/v1/models")
    end
    local stream = math.random() < 0.5
    local share = math.random() < 0.5 and "on" or "off"
    local body = string.format('{"prompt": "%s", "max_tokens": %d, "temperature": 0.8, "stream": %s}',
        prompts[math.random(#prompts)], math.random(1, 64), stream and "true" or "false")
    return wrk.format("POST", "/v1/completions?share=" .. share, {["Content-Type"] = "application/json"}, body)
end

-- SSE: data events, possibly after ": keep-alive" comments (the heartbeat)
local function is_sse(body)
    return body:sub(1, 6) == "data: " or body:sub(1, 2) == ": "
end

local function complete(body)
    if is_sse(body) then
        if body:sub(-14) ~= "data: [DONE]\n\n" then return false end
        return body:find('"finish_reason":"', 1, true) ~= nil or body:find('"error":', 1, true) ~= nil
    end
    return body:sub(1, 6) == '{"id":' and body:find('"finish_reason":"', 1, true) ~= nil
end

function response(status, headers, body)
    local kind
    if is_sse(body) or body:find('"object":"text_completion"', 1, true) then
        kind = "completions"
    elseif body:find('"object":"list"', 1, true) or body:find('"object": "list"', 1, true) then
        kind = "models"
    elseif only_path then
        kind = "models"
    elseif body:sub(1, 9) == '{"error":' and stop_at > 0 and os.time() < stop_at then -- (a 503: queue full)
        kind = "completions"
    else
        kind = "unclassified"
    end
    bump(kind .. "/" .. status)
    if status == 503 or status == 429 then
        local ra = headers["Retry-After"] or headers["retry-after"]
        if not ra then bump("no_retry_after") end
    end
    if kind == "completions" and status == 200 then
        if complete(body) then
            local last
            for n in body:gmatch('"completion_tokens":(%d+)') do last = n end
            bump("tokens", tonumber(last or "0"))
        else
            bump("incomplete")
            local dump = os.getenv("FAULTS_DUMP")
            if dump then
                local f = io.open(dump, "a")
                f:write("----\n", body:sub(1, 300), "\n...\n", body:sub(-300), "\n")
                f:close()
            end
        end
    end
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        local tc = t:get("c")
        for k, v in pairs(tc or {}) do total[k] = (total[k] or 0) + v end
    end
    for k, v in pairs(total) do io.write(string.format("FAULTS %s %d\n", k, v)) end
    io.write(string.format("FAULTS wrk_requests %d\n", summary.requests))
    io.write(string.format("FAULTS wrk_errors_connect %d\n", summary.errors.connect))
    io.write(string.format("FAULTS wrk_errors_read %d\n", summary.errors.read))
    io.write(string.format("FAULTS wrk_errors_timeout %d\n", summary.errors.timeout))
    io.write(string.format("FAULTS wrk_errors_status %d\n", summary.errors.status))
    io.write(string.format("FAULTS latency_p99_ms %.1f\n", latency:percentile(99) / 1000))
end
