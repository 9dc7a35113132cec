# Writes the seed corpora that come from examples/, run at build time:
#   cmake -DEXAMPLES_DIR=... -DSEEDS_DIR=... -P seeds.cmake
# SEEDS_DIR/convert/<type>.json  each example body as it is;
# SEEDS_DIR/http/<type>.http     the same body as a POST /webhooks request
#   with the timestamp fuzz_http's verifier accepts and no signature (the
#   harness signs requests that carry none).

set(now 1772366400)  # 2026-03-01T12:00:00Z, kNowSeconds in fuzz_http.cc

file(REMOVE_RECURSE ${SEEDS_DIR}/convert ${SEEDS_DIR}/http)
file(MAKE_DIRECTORY ${SEEDS_DIR}/convert ${SEEDS_DIR}/http)
file(GLOB examples ${EXAMPLES_DIR}/*.json)
foreach(example ${examples})
  get_filename_component(name ${example} NAME_WLE)
  file(READ ${example} body)
  file(WRITE ${SEEDS_DIR}/convert/${name}.json "${body}")
  string(LENGTH "${body}" length)
  file(WRITE ${SEEDS_DIR}/http/${name}.http
    "POST /webhooks HTTP/1.1\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "Content-Type: application/json\r\n"
    "X-Webhook-Timestamp: ${now}\r\n"
    "Content-Length: ${length}\r\n"
    "\r\n"
    "${body}")
endforeach()
