/* fuzz_params - sequences of mha_set_param / mha_get_param / mha_get_grad /
 * mha_zero_grad / mha_param_count with any ids, counts and NULL pointers.
 * Invariants: statuses have messages; get returns exactly what the last
 * successful set stored; a failed set changes nothing; gradients are zero
 * before any backward and after mha_zero_grad. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    mha_config cfg = rd_config(&r);
    mha_ctx *ctx = fuzz_create(&cfg);
    if (!ctx)
        return 0;
    float *shadow[MHA_PARAM_COUNT] = {0}; /* what each parameter must hold */
    int bounded = 1;
    for (int step = 0; step < 64 && r.n; step++) {
        uint8_t op = rd_u8(&r) % 6;
        int p = (int)(rd_u8(&r) % (MHA_PARAM_COUNT + 3)) - 1; /* -1 and COUNT.. invalid */
        size_t n = mha_param_count(ctx, (mha_param)p);
        size_t count = n + (size_t)(rd_u8(&r) % 3) - 1; /* n - 1, n, n + 1 */
        float *buf = rd_floats(&r, n + 2, &bounded);
        int null = rd_u8(&r) == 0;
        mha_status st = MHA_OK;
        switch (op) {
        case 0:
            st = mha_set_param(null ? NULL : ctx, (mha_param)p, buf, count);
            if (st == MHA_OK) {
                FUZZ_CHECK(n && count == n && !null, "set_param accepted a bad call");
                free(shadow[p]);
                shadow[p] = malloc(n * sizeof(float));
                memcpy(shadow[p], buf, n * sizeof(float));
            }
            break;
        case 1:
            st = mha_get_param(ctx, (mha_param)p, null ? NULL : buf, count);
            if (st == MHA_OK) {
                FUZZ_CHECK(shadow[p] != NULL, "get_param of an unset parameter succeeded");
                FUZZ_CHECK(!memcmp(buf, shadow[p], n * sizeof(float)), "get_param != last set");
            } else if (p >= 0 && p < MHA_PARAM_COUNT && n && count == n && !null) {
                FUZZ_CHECK(st == MHA_ERR_PARAM_NOT_SET && !shadow[p], "get_param failed: %d", st);
            }
            break;
        case 2:
            st = mha_get_grad(ctx, (mha_param)p, null ? NULL : buf, count);
            if (st == MHA_OK)
                for (size_t i = 0; i < n; i++)
                    FUZZ_CHECK(buf[i] == 0.0f, "gradient not zero without backward");
            break;
        case 3:
            st = mha_zero_grad(null ? NULL : ctx);
            FUZZ_CHECK((st == MHA_OK) == !null, "zero_grad status %d", st);
            break;
        case 4:
            FUZZ_CHECK(mha_param_count(NULL, (mha_param)p) == 0, "count of NULL ctx");
            break;
        default:
            FUZZ_CHECK(n == 0 || (p >= 0 && p < MHA_PARAM_COUNT), "count of invalid id");
            break;
        }
        check_status(st);
        free(buf);
    }
    for (int p = 0; p < MHA_PARAM_COUNT; p++)
        free(shadow[p]);
    mha_destroy(ctx);
    return 0;
}
