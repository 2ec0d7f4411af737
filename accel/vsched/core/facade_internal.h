/*
 * vsched core: what the C facades share (facade.cc, vtime_facade.cc).
 */
#ifndef VSCHED_CORE_FACADE_INTERNAL_H
#define VSCHED_CORE_FACADE_INTERNAL_H

#include <memory>

#include "core.h"
#include "real_host.h"

struct VschedCore {
    std::unique_ptr<vsched::RealHost> host;
    std::unique_ptr<vsched::Core> core;
};

#endif
