-- templates/email/password_reset.lua — a password reset link.
-- Variables: name (required), reset_url (required), expires_minutes (optional, default 60).
return {
    subject = "Reset your password",
    text = function(d, h)
        return "Hi " .. h.need(d, "name") .. ",\n\n"
            .. "Someone asked to reset your password. To choose a new one, open:\n"
            .. h.need(d, "reset_url") .. "\n\n"
            .. "The link expires in " .. h.get(d, "expires_minutes", "60") .. " minutes. "
            .. "If you did not ask for this, ignore this message.\n"
    end,
    html = function(d, h)
        local url = h.html(h.need(d, "reset_url"))
        return "<p>Hi " .. h.html(h.need(d, "name")) .. ",</p>"
            .. "<p>Someone asked to reset your password. "
            .. "<a href=\"" .. url .. "\">Choose a new password</a>.</p>"
            .. "<p>The link expires in " .. h.html(h.get(d, "expires_minutes", "60"))
            .. " minutes. If you did not ask for this, ignore this message.</p>"
    end,
}
