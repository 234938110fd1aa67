-- Routing for the integration tests: an explicit provider wins; a chain can
-- be named in metadata.chain ("stripe,sandbox"); otherwise every available
-- payment provider in configuration order.
function route_payment(req, ctx)
  if req.provider then
    return { req.provider }
  end
  if req.metadata and req.metadata.chain then
    local chain = {}
    for name in string.gmatch(req.metadata.chain, "[^,]+") do
      chain[#chain + 1] = name
    end
    return chain
  end
  if req.metadata and req.metadata.loop == "forever" then
    while true do end
  end
  return ctx.available
end
