/* currency — ISO 4217 codes the gateway accepts, and their minor-unit
 * exponent (0 for JPY, 2 for USD, 3 for KWD). */
#ifndef AGAPE_CURRENCY_H
#define AGAPE_CURRENCY_H

/* The exponent of a lowercase 3-letter code, or -1 if unknown. */
int currency_exponent(const char *code);

#endif
