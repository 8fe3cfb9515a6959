#!/bin/sh
# The C++ test, built without zonealloc, run under LD_PRELOAD.
exec env LD_PRELOAD="${ZA_LIB:?ZA_LIB must name the built libzonealloc.so}" "${ZA_BUILDDIR:-.}/tests/test_cxx_plain"
