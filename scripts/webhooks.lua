-- scripts/webhooks.lua — what the gateway does when a provider's webhook
-- arrives (docs/lua.md has the whole story and more examples).
--
-- By the time a rule runs, the gateway has already:
--   * checked the signature and stored the event (the provider got its 200);
--   * moved the payment the event is about to the event's status, never
--     backwards (a late "processing" after "succeeded" changes nothing);
--   * for Stripe customer.subscription.* events, stored the subscription
--     (agape.subscription(id) reads it).
--
-- Rules live in the global table `webhooks`: webhooks[provider][event type]
-- is a function(ev). `provider` is the provider's name in agape.conf;
-- webhooks[provider]["*"] catches that provider's other types. The gateway
-- calls on_webhook(ev) (defined at the end of this file) once per event.
--
-- ev has: id ("<provider>:<event id>"), provider, event_id, type, attempt
-- (1 on the first run), received_at, and when known payment_ref, status (the
-- payment status the event announces), object (the provider's object, e.g.
-- Stripe's data.object), payment (the gateway's payment record, as GET
-- /v1/payments/{id} shows it, after the update) and subscription.
--
-- A rule's effects — agape.kv_put, agape.enqueue_message, agape.track — are
-- committed together with the event's "done" mark, so they happen exactly
-- once. If the rule raises an error, none of them happen; the event is run
-- again later (1 s, 2 s, 4 s … up to webhook_max_attempts, then it is
-- `failed` and can be replayed with POST /v1/webhooks/events/{id}/replay).
-- Rules never block: what they ask for is queued.

-- Who the payment is for: metadata.user_id, else the customer id.
local function user_of(ev)
    local p = ev.payment
    if p then
        if p.metadata and p.metadata.user_id then
            return tostring(p.metadata.user_id)
        end
        if p.customer and p.customer.id then
            return tostring(p.customer.id)
        end
    end
    local o = ev.object
    if o and o.metadata and o.metadata.user_id then
        return tostring(o.metadata.user_id)
    end
    if o and type(o.customer) == "string" then
        return o.customer
    end
    return nil
end

-- Where to write to the customer.
local function email_of(ev)
    local p = ev.payment
    if p and p.customer and p.customer.email then
        return p.customer.email
    end
    local o = ev.object
    if o and type(o.receipt_email) == "string" then
        return o.receipt_email
    end
    return nil
end

-- A payment went through: the user's subscription is active, and they get
-- the subscription_confirmation email.
local function payment_succeeded(ev)
    local p = ev.payment or {}
    local user = user_of(ev)
    if user then
        local sub = agape.kv_get("user_subscriptions", user) or {}
        sub.status = "active"
        sub.payment_id = p.id
        sub.provider = ev.provider
        sub.amount = p.amount
        sub.currency = p.currency
        sub.updated_at = ev.received_at
        agape.kv_put("user_subscriptions", user, sub)
        agape.track{ name = "purchase", user_id = user,
                     params = { value = p.amount, currency = p.currency } }
    end
    local email = email_of(ev)
    if email then
        agape.enqueue_message{
            channel = "email", to = email, template = "subscription_confirmation",
            data = { amount = p.amount, currency = p.currency, payment_id = p.id },
        }
    else
        agape.log("info", "webhook " .. ev.id .. ": no e-mail address to confirm to")
    end
end

-- A payment failed: tell the customer; the subscription is left as it is.
local function payment_failed(ev)
    if ev.payment and ev.payment.status ~= "failed" then
        return -- a late failure of a payment that has since gone through
    end
    local user = user_of(ev)
    if user then
        local sub = agape.kv_get("user_subscriptions", user) or {}
        sub.last_payment_failed_at = ev.received_at
        agape.kv_put("user_subscriptions", user, sub)
    end
    local email = email_of(ev)
    if email then
        agape.enqueue_message{
            channel = "email", to = email,
            subject = "Your payment did not go through",
            text = "We could not take your payment. Please check your card and try again.",
        }
    end
end

-- Stripe subscriptions: keep the user's record in step with Stripe's.
local function subscription_changed(ev)
    local s = ev.subscription
    if not s then
        return -- an older event than the stored state: nothing to do
    end
    local user = s.metadata and s.metadata.user_id
    if user then
        local sub = agape.kv_get("user_subscriptions", user) or {}
        sub.status = s.deleted and "canceled" or s.status
        sub.subscription_id = s.id
        sub.current_period_end = s.current_period_end
        agape.kv_put("user_subscriptions", user, sub)
    end
end

webhooks = {
    stripe = {
        ["payment_intent.succeeded"] = payment_succeeded,
        ["payment_intent.payment_failed"] = payment_failed,
        ["customer.subscription.created"] = subscription_changed,
        ["customer.subscription.updated"] = subscription_changed,
        ["customer.subscription.deleted"] = subscription_changed,
    },
    -- The sandbox provider's events are {"id", "type", "payment_ref",
    -- "status", "data"}, signed like Stripe's (Sandbox-Signature).
    sandbox = {
        ["payment.succeeded"] = payment_succeeded,
        ["payment.failed"] = payment_failed,
    },
}

-- The gateway calls this once per event. Keep it: it finds the rule.
function on_webhook(ev)
    local rules = webhooks[ev.provider]
    local rule = rules and (rules[ev.type] or rules["*"])
    if rule then
        return rule(ev)
    end
end
