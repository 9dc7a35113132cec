// A temporary directory for one test, removed with everything in it when
// the test ends.

#ifndef FANOUT_TESTS_UTIL_TEMP_DIR_H_
#define FANOUT_TESTS_UTIL_TEMP_DIR_H_

#include <string>

namespace fanout::testing {

class TempDir {
 public:
  // Creates a new directory under $TMPDIR (or /tmp). Aborts the test
  // program if it cannot.
  TempDir();
  ~TempDir();

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace fanout::testing

#endif  // FANOUT_TESTS_UTIL_TEMP_DIR_H_
