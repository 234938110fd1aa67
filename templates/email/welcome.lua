-- templates/email/welcome.lua — sent after sign-up.
-- Variables: name (required), product (optional, default "Agape").
-- Each part is a function(d, h): d is the request's data, h the helpers
-- (h.need(d, key) fails the request with "missing variable <key>" when the
-- key is absent; h.get(d, key, default); h.html(s) escapes for HTML).
local function product(d, h)
    return h.get(d, "product", "Agape")
end

return {
    subject = function(d, h)
        return "Welcome to " .. product(d, h) .. ", " .. h.need(d, "name")
    end,
    text = function(d, h)
        return "Hi " .. h.need(d, "name") .. ",\n\n"
            .. "Welcome to " .. product(d, h) .. ". We are glad you are here.\n"
    end,
    html = function(d, h)
        return "<p>Hi " .. h.html(h.need(d, "name")) .. ",</p>"
            .. "<p>Welcome to " .. h.html(product(d, h)) .. ". We are glad you are here.</p>"
    end,
}
