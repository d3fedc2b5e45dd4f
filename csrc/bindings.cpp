// Python binding of the rules core: module ringrift._core. One file per area under csrc/bindings/
// (engine, selfplay, export, env), sharing bindings/common.h; every argument is checked at this
// boundary (bindings/checked_args.h). This file only creates the module: to bind a new area,
// write csrc/bindings/<area>.cpp with a register_<area>(py::module_&), declare it in
// bindings/common.h, add the file to CMakeLists.txt and call it below.
#include "bindings/common.h"

PYBIND11_MODULE(_core, mod) {
  mod.doc() = "RingRift rules core (C++), shared by CPU and CUDA builds";
  rr::bind::register_engine(mod);    // first: Move and Game, which the other areas take as arguments
  rr::bind::register_selfplay(mod);
  rr::bind::register_export(mod);    // submodule ringrift._core.export
  rr::bind::register_upstream_export(mod);  // submodule ringrift._core.upstream (upstream's encoding)
  rr::bind::register_env(mod);
  rr::bind::register_db(mod);
  rr::bind::register_search(mod);
}
