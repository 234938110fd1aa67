-- bench/post.lua: wrk script for one POST with a JSON or form body.
--
--   wrk -s bench/post.lua URL -- PATH CONTENT_TYPE BODY [AUTH] [idem]
--
-- AUTH (optional, "-" for none) is sent as "Authorization: Bearer AUTH".
-- With "idem", each request carries a unique Idempotency-Key
-- (<run prefix>-<thread>-<counter>); otherwise one request is built once and
-- sent over and over (no per-request Lua work).

local thread_count = 0

function setup(thread)
    thread_count = thread_count + 1
    thread:set("tid", thread_count)
end

local path, body, headers, idem, prebuilt, prefix
local counter = 0

function init(args)
    path = args[1] or "/"
    local ctype = args[2] or "application/json"
    body = args[3] or ""
    local auth = args[4]
    idem = args[5] == "idem"
    headers = {["Content-Type"] = ctype}
    if auth ~= nil and auth ~= "" and auth ~= "-" then
        headers["Authorization"] = "Bearer " .. auth
    end
    -- Unique across runs and threads: time + pid-ish randomness + thread id.
    math.randomseed(os.time() + (tid or 0) * 7919)
    prefix = string.format("b%x%04x-%d", os.time(), math.random(0, 0xffff), tid or 0)
    if not idem then
        prebuilt = wrk.format("POST", path, headers, body)
    end
end

function request()
    if prebuilt then
        return prebuilt
    end
    counter = counter + 1
    headers["Idempotency-Key"] = prefix .. "-" .. counter
    return wrk.format("POST", path, headers, body)
end
