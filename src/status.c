/* status.c - status messages and version, generated from the header's lists. */
#include "internal.h"

const char *mha_strerror(int status)
{
    switch (status) {
#define MHA__STATUS_CASE(name, value, msg) \
    case value:                             \
        return msg;
        MHA_STATUS_LIST(MHA__STATUS_CASE)
#undef MHA__STATUS_CASE
    default:
        return "unknown status";
    }
}

unsigned mha_version(void) { return MHA_VERSION_NUMBER; }

const char *mha_version_string(void) { return MHA_VERSION_STRING; }
