/* A valid payment plugin whose init always refuses its configuration, as a
 * real plugin does on a malformed key. The provider must end up unusable
 * with this reason. */
#include <agape/plugin.h>
#include <stdio.h>

static int init_fails_init(const struct agape_host *host, const struct agape_json *conf,
                           void **ctx, char *err, size_t errlen)
{
    (void)host;
    (void)conf;
    *ctx = NULL;
    snprintf(err, errlen, "api_key must start with test_");
    return AGAPE_EINVAL;
}

static void init_fails_destroy(void *ctx)
{
    (void)ctx;
}

static enum agape_step init_fails_charge(struct agape_call *call)
{
    snprintf(call->err, sizeof(call->err), "never initialised");
    return AGAPE_STEP_FAIL;
}

static const struct agape_payment_ops init_fails_payment = {
    .size = sizeof(struct agape_payment_ops),
    .charge = init_fails_charge,
};

static const struct agape_option init_fails_options[] = {
    {.name = "api_key",
     .flags = AGAPE_OPT_SECRET,
     .env = "INIT_FAILS_KEY",
     .description = "registered for redaction before init"},
    {.name = NULL},};

static const struct agape_plugin init_fails_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "init_fails",
    .version = "0.0.1",
    .kinds = AGAPE_KIND_PAYMENT,
    .options = init_fails_options,
    .init = init_fails_init,
    .destroy = init_fails_destroy,
    .payment = &init_fails_payment,
};

AGAPE_PLUGIN_DEFINE(init_fails_plugin)
