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
