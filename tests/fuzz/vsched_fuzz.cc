/*
 * libFuzzer target: the bytes choose a VM shape and then drive a long
 * random event sequence through the core on the simulated host (the same
 * driver as the seeded property test, tests/unit/vsched/sim_driver.h).
 * Any broken invariant (slot conservation, lost or doubly running vCPU,
 * starvation bound, counter identities) aborts with a message.
 */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "sim_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    using namespace vsched;
    using namespace vsched::test;
    if (size < 3) {
        return 0;
    }
    SimDriver::Params p;
    p.nr_vcpus = 1 + data[0] % 24;
    p.pcpus = 1 + data[1] % p.nr_vcpus;
    p.policy = static_cast<PolicyId>(data[2] % policy_count());
    SimDriver d(p);
    data += 3;
    size -= 3;
    while (size >= 8) {
        uint32_t a, b;
        std::memcpy(&a, data, 4);
        std::memcpy(&b, data + 4, 4);
        data += 8;
        size -= 8;
        if (!d.step(a, b)) {
            std::fprintf(stderr, "vsched-fuzz: step %llu (%d vCPUs, %d pcpus, %s): %s\n",
                         static_cast<unsigned long long>(d.steps()), p.nr_vcpus, p.pcpus,
                         policy_name(p.policy), d.error().c_str());
            std::abort();
        }
    }
    return 0;
}
