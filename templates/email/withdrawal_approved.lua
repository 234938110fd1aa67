-- templates/email/withdrawal_approved.lua — a withdrawal request was approved.
-- Variables: name, amount (e.g. "50.00 EUR") (required); reference, eta (optional).
return {
    subject = function(d, h)
        return "Your withdrawal of " .. h.need(d, "amount") .. " was approved"
    end,
    text = function(d, h)
        local s = "Hi " .. h.need(d, "name") .. ",\n\n"
            .. "Your withdrawal of " .. h.need(d, "amount") .. " was approved"
        local ref = h.get(d, "reference")
        if ref then
            s = s .. " (reference " .. ref .. ")"
        end
        s = s .. ".\n"
        local eta = h.get(d, "eta")
        if eta then
            s = s .. "Expect the funds by " .. eta .. ".\n"
        end
        return s
    end,
    html = function(d, h)
        local s = "<p>Hi " .. h.html(h.need(d, "name")) .. ",</p>"
            .. "<p>Your withdrawal of " .. h.html(h.need(d, "amount")) .. " was approved"
        local ref = h.get(d, "reference")
        if ref then
            s = s .. " (reference " .. h.html(ref) .. ")"
        end
        s = s .. ".</p>"
        local eta = h.get(d, "eta")
        if eta then
            s = s .. "<p>Expect the funds by " .. h.html(eta) .. ".</p>"
        end
        return s
    end,
}
