file(REMOVE_RECURSE
  "libmha_naive.a"
)
