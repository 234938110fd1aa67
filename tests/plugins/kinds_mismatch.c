/* Declares the payment kind but provides no payment operations table. */
#include <agape/plugin.h>

static const struct agape_plugin kinds_mismatch_plugin = {
    .abi_version = AGAPE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct agape_plugin),
    .name = "kinds_mismatch",
    .version = "0.0.1",
    .kinds = AGAPE_KIND_PAYMENT,
    .payment = NULL,
};

AGAPE_PLUGIN_DEFINE(kinds_mismatch_plugin)
