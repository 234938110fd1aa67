-- templates/sms/subscription_notification.lua — a subscription changed.
-- Variables: plan, status (e.g. "active", "renewed", "canceled") (required).
return {
    body = function(d, h)
        return "Your " .. h.need(d, "plan") .. " subscription is now " .. h.need(d, "status") .. "."
    end,
}
