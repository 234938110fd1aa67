-- scripts/routing.lua — which payment providers to try, and in which order.
--
-- The gateway calls route_payment(req, ctx) for every POST /v1/payments and
-- tries the providers of the list it returns, first to last: it retries and
-- fails over along this list (never to a second provider once a payment's
-- outcome is unknown, so nobody is charged twice).
--
--   req  the payment request as the client sent it:
--          req.amount     integer, in the currency's minor unit (cents; whole
--                         yen for zero-decimal currencies)
--          req.currency   "usd", "eur", … (as sent; compare in lower case)
--          req.provider   optional: the client asked for this provider
--          req.customer   optional table {id = …, email = …}
--          req.metadata   optional table of strings
--   ctx  what the gateway knows:
--          ctx.available  the usable payment providers, in the order of the
--                         configuration (providers whose credentials are
--                         missing or whose plugin failed are not in it)
--
-- Return an array of provider names, e.g. {"stripe", "paypal"}.
--
-- How these files run (all of scripts/*.lua, in name order, share one set of
-- globals): the sandbox has string, table, math, utf8, os.time/clock/date and
-- agape.log(level, msg) / agape.now(); there is no io, no os.execute and no
-- way to block. Each call has an instruction budget and a memory cap. Keep
-- helpers `local` so they don't become globals; don't keep state in globals
-- between calls either: each gateway thread has its own copy of them.

-- Which providers to prefer, per currency (lower case ISO 4217 code).
-- Edit freely: names are the provider names of etc/agape.conf.
local PREFERENCES = {
    usd = { "stripe", "paypal" },
    eur = { "stripe", "paypal" },
    gbp = { "stripe", "paypal" },
    -- Yen is a zero-decimal currency; in this example only Stripe takes it.
    jpy = { "stripe" },
}

-- For a currency not listed above.
local DEFAULT_PREFERENCE = { "stripe", "paypal" }

-- From this amount on (in minor units: 100000 cents = 1000.00) we would
-- rather go through PayPal first, e.g. because of its fee cap. The rule
-- applies to the currencies listed here only: 100000 yen is not 100000 cents.
local LARGE_AMOUNT = 100000
local LARGE_AMOUNT_CURRENCIES = { usd = true, eur = true, gbp = true }

-- Does the array `list` contain `name`?
local function contains(list, name)
    for _, v in ipairs(list) do
        if v == name then
            return true
        end
    end
    return false
end

-- `wanted` without the providers that are not available, order kept.
local function only_available(wanted, available)
    local out = {}
    for _, name in ipairs(wanted) do
        if contains(available, name) and not contains(out, name) then
            out[#out + 1] = name
        end
    end
    return out
end

-- A copy of `list` with `name` moved to the front (if it is in it).
local function prefer(list, name)
    if not contains(list, name) then
        return list
    end
    local out = { name }
    for _, v in ipairs(list) do
        if v ~= name then
            out[#out + 1] = v
        end
    end
    return out
end

function route_payment(req, ctx)
    local available = (ctx and ctx.available) or {}

    -- 1. The client named a provider: that one, and only that one. (The
    --    gateway answers 404 if no such provider is configured.)
    if type(req.provider) == "string" and req.provider ~= "" then
        return { req.provider }
    end

    -- 2. The preference for the currency…
    local currency = string.lower(tostring(req.currency or ""))
    local wanted = PREFERENCES[currency] or DEFAULT_PREFERENCE

    -- …with PayPal first for large amounts.
    local amount = tonumber(req.amount) or 0
    if LARGE_AMOUNT_CURRENCIES[currency] and amount >= LARGE_AMOUNT then
        wanted = prefer(wanted, "paypal")
    end

    -- 3. Keep what is actually usable right now.
    local chain = only_available(wanted, available)

    -- 4. Nothing left (e.g. only the sandbox provider is configured): try
    --    every available provider, in configuration order.
    if #chain == 0 then
        for _, name in ipairs(available) do
            chain[#chain + 1] = name
        end
    end

    if #chain == 0 then
        agape.log("warn", "route_payment: no payment provider is available")
    end
    return chain
end

-- Analytics and monitoring ----------------------------------------------
--
-- route_event(ev, ctx): which analytics providers receive an event queued
-- by POST /v1/events (or by agape.track in a webhook rule). The event goes
-- to EVERY provider of the returned list; each batches its events (at most
-- 25 per request, by client). Return {} to send it nowhere.
--   ev   the event: ev.name (GA4 shape) or ev.category / ev.action /
--        ev.label / ev.value (the seed shape), ev.user_id, ev.client_id,
--        ev.params, ev.timestamp_micros
--   ctx  ctx.available: the usable analytics providers, in configuration
--        order
-- The gateway calls it when the event is first delivered, not when it is
-- accepted; an event retried later keeps the providers it still needs.
function route_event(ev, ctx)
    return (ctx and ctx.available) or {}
end

-- route_error(err, ctx): which monitoring providers receive an error report
-- (POST /v1/errors, or one of the gateway's own). Every provider of the list
-- gets it.
--   err  err.message, err.level ("fatal", "error", "warning", "info",
--        "debug"), err.exception = {type = …, value = …}, err.tags,
--        err.user, err.event_id; the gateway's own reports carry
--        err.tags.source ("circuit", …) and err.tags.provider
--   ctx  ctx.available: the usable monitoring providers that take error
--        reports, in configuration order
-- For example, keep debug-level reports out of monitoring:
--     if err.level == "debug" then return {} end
function route_error(err, ctx)
    return (ctx and ctx.available) or {}
end

-- ---------------------------------------------------------------------------
-- Messages: which messaging providers to try for an e-mail or an SMS.
--
-- The gateway calls route_message(msg, ctx) each time it starts a delivery
-- attempt of a message (POST /v1/messages, or agape.enqueue_message in a
-- rule) and tries the providers of the list it returns, first to last, with
-- retries and fail-over along it. When no provider of the list delivers,
-- the message waits (1 s, 2 s, 4 s … up to 5 min) and is routed again.
--
--   msg  what is being sent:
--          msg.id        "msg_…"
--          msg.channel   "email" or "sms"
--          msg.to        the recipient (an address, or an E.164 number)
--          msg.template  the template's name, when it came from one
--          msg.source    the webhook event that queued it, for rule messages
--   ctx  what the gateway knows:
--          ctx.available the usable providers that can send on this channel,
--                        in configuration order (sandbox included)
--          ctx.attempt   1 for the first attempt, 2 for the next, …
--
-- Return an array of provider names. A provider that is not usable now is
-- skipped. After an attempt whose outcome is unknown (sent, no answer) the
-- gateway does not ask again: the next attempt goes to the same providers.

-- Preferred providers per channel: SendGrid with SMTP behind it for e-mail,
-- Twilio for SMS. Names are the provider names of etc/agape.conf.
local MESSAGE_PREFERENCES = {
    email = { "sendgrid", "smtp" },
    sms = { "twilio" },
}

function route_message(msg, ctx)
    local available = (ctx and ctx.available) or {}
    local wanted = MESSAGE_PREFERENCES[msg.channel] or {}
    local chain = only_available(wanted, available)

    -- None of the preferred providers is configured (e.g. the default
    -- configuration, with the sandbox only): every usable one.
    if #chain == 0 then
        for _, name in ipairs(available) do
            chain[#chain + 1] = name
        end
    end

    if #chain == 0 then
        agape.log("warn", "route_message: no " .. tostring(msg.channel) .. " provider is available")
    end
    return chain
end
