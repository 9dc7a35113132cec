"""fanout_cc_test: one GoogleTest binary per folder of tests/."""

def fanout_cc_test(name, folder, deps = [], size = "small", **kwargs):
    """A cc_test of every *_test.cc in `folder`, with the shared test utilities.

    Args:
      name: the test target, named as in tests/CMakeLists.txt.
      folder: the folder of tests/ whose *_test.cc files make up the test.
      deps: the libraries under test and any others the sources use.
      size: Bazel's test size; "medium" for tests that use the loopback
        network (servers on port 0).
      **kwargs: passed on to cc_test (data, copts, ...).
    """
    native.cc_test(
        name = name,
        size = size,
        srcs = native.glob([folder + "/*_test.cc"]),
        deps = deps + [
            ":fanout_test_util",
            "//bazel/third_party/googletest:gmock",
            "//bazel/third_party/googletest:gtest",
            "//bazel/third_party/googletest:gtest_main",
        ],
        **kwargs
    )
