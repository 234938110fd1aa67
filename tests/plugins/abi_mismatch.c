/* A plugin built against a future ABI: the loader must refuse it and name
 * both version numbers. Otherwise well formed. */
#include <agape/plugin.h>

static enum agape_step abi_mismatch_charge(struct agape_call *call)
{
    (void)call;
    return AGAPE_STEP_FAIL;
}

static const struct agape_payment_ops abi_mismatch_payment = {
    .size = sizeof(struct agape_payment_ops),
    .charge = abi_mismatch_charge,
};

static const struct agape_plugin abi_mismatch_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION + 1,
    .size = sizeof(struct agape_plugin),
    .name = "abi_mismatch",
    .version = "0.0.1",
    .kinds = AGAPE_KIND_PAYMENT,
    .payment = &abi_mismatch_payment,
};

AGAPE_PLUGIN_DEFINE(abi_mismatch_plugin)
