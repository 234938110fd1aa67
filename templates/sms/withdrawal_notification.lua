-- templates/sms/withdrawal_notification.lua — a withdrawal was approved or rejected.
-- Variables: amount, status ("approved" or "rejected") (required).
return {
    body = function(d, h)
        return "Your withdrawal of " .. h.need(d, "amount") .. " was " .. h.need(d, "status") .. "."
    end,
}
