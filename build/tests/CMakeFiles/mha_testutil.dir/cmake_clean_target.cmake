file(REMOVE_RECURSE
  "libmha_testutil.a"
)
