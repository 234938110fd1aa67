-- templates/sms/verification_code.lua — a one-time code.
-- Variables: code (required), product (optional, default "Agape").
return {
    body = function(d, h)
        return "Your " .. h.get(d, "product", "Agape") .. " verification code is "
            .. h.need(d, "code") .. ". It expires soon; do not share it."
    end,
}
