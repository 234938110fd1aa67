-- templates/email/withdrawal_rejected.lua — a withdrawal request was rejected.
-- Variables: name, amount (required); reason (optional).
return {
    subject = function(d, h)
        return "Your withdrawal of " .. h.need(d, "amount") .. " was not approved"
    end,
    text = function(d, h)
        local s = "Hi " .. h.need(d, "name") .. ",\n\n"
            .. "We could not approve your withdrawal of " .. h.need(d, "amount") .. ".\n"
        local reason = h.get(d, "reason")
        if reason then
            s = s .. "Reason: " .. reason .. "\n"
        end
        return s .. "Reply to this message if you have questions.\n"
    end,
    html = function(d, h)
        local s = "<p>Hi " .. h.html(h.need(d, "name")) .. ",</p>"
            .. "<p>We could not approve your withdrawal of " .. h.html(h.need(d, "amount"))
            .. ".</p>"
        local reason = h.get(d, "reason")
        if reason then
            s = s .. "<p>Reason: " .. h.html(reason) .. "</p>"
        end
        return s .. "<p>Reply to this message if you have questions.</p>"
    end,
}
