#include "rebalance.h"

struct rebalance_params rebalance_default_params(void)
{
    return (struct rebalance_params){.on = false, .alpha = REBALANCE_DEFAULT_ALPHA, .tau = REBALANCE_DEFAULT_TAU};
}

float rebalance_factor(const struct rebalance_params *r, uint32_t layer, uint32_t n_layer)
{
    if (layer == 0 || n_layer < 2) return 1.0f;
    return 1.0f + r->alpha * (1.0f - (float)layer / (float)(n_layer - 1));
}

void rebalance_mask_row(const float *p, size_t n_pos, size_t self, float tau, uint8_t *mask)
{
    for (size_t j = 0; j < n_pos; j++) mask[j] = (uint8_t)(j != self && p[j] > tau);
}
