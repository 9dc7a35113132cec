// Boost.JSON compiled from source into the fuzz targets, in place of the
// system's libboost_json, so that the parser and serializer are built with
// the same instrumentation as our code: libFuzzer sees coverage inside the
// parser, and ASan and UBSan check it. fuzz/CMakeLists.txt makes this
// library the Boost::json that the server's libraries link.

#include <boost/json/src.hpp>
