-- templates/email/subscription_confirmation.lua — a subscription started (or a
-- payment for it went through).
-- Variables: amount (required): a display string such as "19.99 USD", or an
-- integer in the currency's minor unit together with `currency` ("usd"), as the
-- shipped webhook rule (scripts/webhooks.lua) sends it; name, plan,
-- payment_id, next_billing_date (optional).

-- Currencies without a minor unit: their amounts are whole units.
local ZERO_DECIMAL = {
    bif = true, clp = true, djf = true, gnf = true, jpy = true, kmf = true, krw = true,
    mga = true, pyg = true, rwf = true, ugx = true, vnd = true, vuv = true, xaf = true,
    xof = true, xpf = true,
}

local function price(d, h)
    local amount = h.need(d, "amount")
    local currency = h.get(d, "currency")
    if currency and math.type(d.amount) == "integer" and d.amount >= 0 then
        local code = string.upper(currency)
        if ZERO_DECIMAL[string.lower(currency)] then
            return amount .. " " .. code
        end
        return string.format("%d.%02d %s", d.amount // 100, d.amount % 100, code)
    end
    return amount
end

local function greeting(d, h)
    local name = h.get(d, "name")
    return name and ("Hi " .. name .. ",") or "Hello,"
end

local function what(d, h)
    local plan = h.get(d, "plan")
    return plan and ("your " .. plan .. " subscription") or "your subscription"
end

return {
    subject = function(d, h)
        local plan = h.get(d, "plan")
        return plan and ("Your " .. plan .. " subscription is active")
            or "Your subscription is active"
    end,
    text = function(d, h)
        local s = greeting(d, h) .. "\n\n"
            .. "Thank you: we received " .. price(d, h) .. " for " .. what(d, h) .. ".\n"
        local ref = h.get(d, "payment_id")
        if ref then
            s = s .. "Payment reference: " .. ref .. "\n"
        end
        local next_date = h.get(d, "next_billing_date")
        if next_date then
            s = s .. "Your next billing date is " .. next_date .. ".\n"
        end
        return s
    end,
    html = function(d, h)
        local s = "<p>" .. h.html(greeting(d, h)) .. "</p>"
            .. "<p>Thank you: we received <strong>" .. h.html(price(d, h)) .. "</strong> for "
            .. h.html(what(d, h)) .. ".</p>"
        local ref = h.get(d, "payment_id")
        if ref then
            s = s .. "<p>Payment reference: " .. h.html(ref) .. "</p>"
        end
        local next_date = h.get(d, "next_billing_date")
        if next_date then
            s = s .. "<p>Your next billing date is " .. h.html(next_date) .. ".</p>"
        end
        return s
    end,
}
