/* A payment plugin whose option table declares an integer with a default
 * that is not one: the loader refuses the file (options_decl_ok), because no
 * configuration could ever fix it. */
#include <agape/plugin.h>
#include <stdio.h>

static int bad_option_init(const struct agape_host *host, const struct agape_json *conf,
                           void **ctx, char *err, size_t errlen)
{
    (void)host;
    (void)conf;
    (void)err;
    (void)errlen;
    *ctx = NULL;
    return AGAPE_OK;
}

static void bad_option_destroy(void *ctx)
{
    (void)ctx;
}

static enum agape_step bad_option_charge(struct agape_call *call)
{
    snprintf(call->err, sizeof(call->err), "never loaded");
    return AGAPE_STEP_FAIL;
}

static const struct agape_payment_ops bad_option_payment = {
    .size = sizeof(struct agape_payment_ops),
    .charge = bad_option_charge,
};

static const struct agape_option bad_option_options[] = {
    {.name = "api_key", .flags = AGAPE_OPT_REQUIRED | AGAPE_OPT_SECRET, .description = "the key"},
    {.name = "timeout_s",
     .description = "seconds",
     .type = AGAPE_OPT_INT,
     .dflt = "5m",
     .min = 1,
     .max = 60},
    {0},};

static const struct agape_plugin bad_option_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "bad_option",
    .version = "0.0.1",
    .kinds = AGAPE_KIND_PAYMENT,
    .options = bad_option_options,
    .init = bad_option_init,
    .destroy = bad_option_destroy,
    .payment = &bad_option_payment,
};

AGAPE_PLUGIN_DEFINE(bad_option_plugin)
