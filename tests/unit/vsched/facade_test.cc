/* The C facade, used as the QEMU glue will use it. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "vsched-core.h"

namespace {

struct Glue {
    uint64_t now = 1'000'000;
    std::vector<int> kicks, wakes;
    std::vector<int> events;
    std::vector<std::string> yields; /* "policy/pass" of each yield event */
};

uint64_t glue_now(void *o) { return static_cast<Glue *>(o)->now; }
void glue_kick(void *o, int v) { static_cast<Glue *>(o)->kicks.push_back(v); }
void glue_wake(void *o, int v) { static_cast<Glue *>(o)->wakes.push_back(v); }
void glue_trace(void *o, int ev, int, int, int64_t arg)
{
    auto *g = static_cast<Glue *>(o);
    g->events.push_back(ev);
    if (ev == VSCHED_TRACE_YIELD) {
        int pol = VSCHED_TRACE_YIELD_POLICY(arg);
        const char *pass = vsched_policy_pass_name(pol, VSCHED_TRACE_YIELD_PASS(arg));
        g->yields.push_back(std::string(vsched_policy_name(pol)) + "/" + (pass ? pass : "?"));
    }
}

const VschedHostOps kOps = {glue_now, glue_kick, glue_wake, glue_trace};

int policy(const char *word)
{
    int p = -1;
    EXPECT_TRUE(vsched_parse_policy(word, &p)) << word;
    return p;
}

/* One slot, 1 ms slice, policy `word`: the glue-protocol tests' core. */
VschedCore *one_slot_core(Glue &g, const char *word, int vcpus)
{
    VschedConfig c;
    vsched_config_defaults(&c);
    c.pcpus = 1;
    c.slice_ns = 1'000'000;
    c.policy = policy(word);
    char err[128] = "";
    VschedCore *core = vsched_core_new(&c, vcpus, &kOps, &g, err, sizeof(err));
    EXPECT_NE(core, nullptr) << err;
    return core;
}

TEST(Facade, DefaultsAndWords)
{
    VschedConfig c;
    std::memset(&c, 0xff, sizeof(c));
    vsched_config_defaults(&c);
    EXPECT_EQ(c.pcpus, 1);
    EXPECT_EQ(c.slice_ns, 20'000'000u);
    EXPECT_STREQ(vsched_policy_name(c.policy), "vanilla");
    EXPECT_TRUE(c.relaxed_boost);
    EXPECT_TRUE(c.ipi_tracking);
    EXPECT_EQ(c.ipi_window_ns, 50'000'000u);
    EXPECT_EQ(c.yield_budget, 3);
    EXPECT_TRUE(c.yielder_preempted);

    int p = -1;
    EXPECT_TRUE(vsched_parse_policy("ipi-prio", &p));
    EXPECT_STREQ(vsched_policy_name(p), "ipi-prio");
    EXPECT_TRUE(vsched_parse_policy("ipi_prio", &p));
    EXPECT_STREQ(vsched_policy_name(p), "ipi-prio");
    EXPECT_FALSE(vsched_parse_policy("fast", &p));
    EXPECT_FALSE(vsched_parse_policy(nullptr, &p));
    EXPECT_STREQ(vsched_policy_name(42), "unknown");
    /* The registry's list: every id round-trips, the list names them all. */
    std::string list = vsched_policy_list();
    ASSERT_GE(vsched_policy_count(), 5);
    for (int i = 0; i < vsched_policy_count(); i++) {
        EXPECT_TRUE(vsched_parse_policy(vsched_policy_name(i), &p));
        EXPECT_EQ(p, i);
        EXPECT_NE(list.find(vsched_policy_name(i)), std::string::npos);
    }
    EXPECT_EQ(vsched_policy_pass_count(policy("ipi")), 2);
    EXPECT_STREQ(vsched_policy_pass_name(policy("ipi"), 1), "relaxed");
    EXPECT_EQ(vsched_policy_pass_name(policy("ipi"), 2), nullptr);
    EXPECT_EQ(vsched_policy_pass_count(policy("none")), 0);

    /* The settings table through the C facade, as vsched-props.c uses it. */
    ASSERT_GE(vsched_setting_count(), 11);
    EXPECT_EQ(vsched_setting(-1), nullptr);
    EXPECT_EQ(vsched_setting(vsched_setting_count()), nullptr);
    const VschedSetting *pw = vsched_setting_find("ple-window");
    ASSERT_NE(pw, nullptr);
    EXPECT_TRUE(pw->runtime);
    EXPECT_FALSE(vsched_setting_find("slice")->runtime);
    EXPECT_EQ(vsched_setting_find("ple-window-max"), nullptr);
    char msg[160];
    EXPECT_FALSE(vsched_setting_check(pw, 5'000'000, msg, sizeof(msg)));
    EXPECT_STREQ(msg, "Parameter 'ple-window' must be between 1us and 3200us (got 5ms)");
    EXPECT_TRUE(vsched_setting_check(pw, 100'000, msg, sizeof(msg)));
    EXPECT_FALSE(vsched_setting_check(nullptr, 1, msg, sizeof(msg)));
    EXPECT_NE(std::string(vsched_setting_description(pw)).find("run time"), std::string::npos);
    EXPECT_STREQ(vsched_setting_description(nullptr), "");
    char dur[8];
    EXPECT_EQ(vsched_format_duration(3'200'000, dur, sizeof(dur)), 6u);
    EXPECT_STREQ(dur, "3200us");
    EXPECT_EQ(vsched_format_duration(1'500, dur, 4), 6u);
    EXPECT_STREQ(dur, "150"); /* truncated */

    uint64_t ns = 0;
    char err[128] = "";
    EXPECT_TRUE(vsched_parse_duration("100us", &ns, err, sizeof(err)));
    EXPECT_EQ(ns, 100'000u);
    EXPECT_FALSE(vsched_parse_duration("-1ms", &ns, err, sizeof(err)));
    EXPECT_GT(std::strlen(err), 0u);
    EXPECT_FALSE(vsched_parse_duration("12 apples", &ns, err, 4));
    EXPECT_EQ(std::strlen(err), 3u); /* truncated, NUL-terminated */
}

TEST(Facade, NewValidates)
{
    VschedConfig c;
    vsched_config_defaults(&c);
    char err[128] = "";
    EXPECT_EQ(vsched_core_new(&c, 0, &kOps, nullptr, err, sizeof(err)), nullptr);
    EXPECT_NE(std::string(err).find("vCPU"), std::string::npos);
    c.pcpus = 0;
    EXPECT_EQ(vsched_core_new(&c, 4, &kOps, nullptr, err, sizeof(err)), nullptr);
    EXPECT_NE(std::string(err).find("pcpus"), std::string::npos);
    c.pcpus = 1;
    EXPECT_EQ(vsched_core_new(&c, 4, nullptr, nullptr, err, sizeof(err)), nullptr);
    EXPECT_EQ(vsched_core_new(nullptr, 4, &kOps, nullptr, err, sizeof(err)), nullptr);
    c.policy = 17;
    EXPECT_EQ(vsched_core_new(&c, 4, &kOps, nullptr, err, sizeof(err)), nullptr);
}

TEST(Facade, GlueProtocolEndToEnd)
{
    Glue g;
    VschedCore *core = one_slot_core(g, "ipi-prio", 3);
    ASSERT_NE(core, nullptr);

    ASSERT_TRUE(vsched_acquire(core, 0));
    ASSERT_FALSE(vsched_acquire(core, 1));
    ASSERT_FALSE(vsched_acquire(core, 2));
    int dst[] = {1, 2};
    vsched_on_ipi(core, 0, dst, 2, 0xfd, 0, 0); /* TLB-shootdown-like */

    /* PAUSE loop until the detector fires. */
    bool fired = false;
    for (int i = 0; i < 1000 && !fired; i++) {
        g.now += 2'000;
        fired = vsched_on_pause(core, 0, 0);
    }
    ASSERT_TRUE(fired);
    EXPECT_TRUE(vsched_after_exec(core, 0, 0));
    ASSERT_EQ(g.wakes.size(), 1u);
    int target = g.wakes[0];
    EXPECT_EQ(target, 1); /* first receiver in scan order */
    EXPECT_TRUE(vsched_acquire(core, target));

    VschedVcpuInfo info;
    ASSERT_TRUE(vsched_vcpu_info(core, 0, &info));
    EXPECT_STREQ(info.state, "runnable-queued");
    EXPECT_EQ(info.state_id, VSCHED_STATE_QUEUED);
    EXPECT_FALSE(info.holds_slot);
    EXPECT_TRUE(info.ready);
    EXPECT_EQ(info.nr_receivers, 2);
    ASSERT_TRUE(vsched_vcpu_info(core, 1, &info));
    EXPECT_TRUE(info.holds_slot);
    EXPECT_EQ(info.nr_pending_ipis, 1);
    EXPECT_EQ(info.pending_from[0], 0);
    EXPECT_EQ(info.pending_vector[0], 0xfd);
    EXPECT_FALSE(vsched_vcpu_info(core, 3, &info));

    vsched_on_irq_accept(core, 1, 0xfd);
    vsched_on_eoi(core, 1, 0xfd);
    ASSERT_TRUE(vsched_vcpu_info(core, 1, &info));
    EXPECT_EQ(info.nr_pending_ipis, 0);

    /* Slice expiry through the timer thread. */
    g.now += 2'000'000;
    uint64_t next = vsched_tick(core);
    EXPECT_GT(next, g.now);
    ASSERT_EQ(g.kicks.size(), 1u);
    EXPECT_EQ(g.kicks[0], 1);
    EXPECT_TRUE(vsched_after_exec(core, 1, 0));

    vsched_release(core, 2, VSCHED_RELEASE_HALT);
    vsched_release(core, 2, 99); /* ignored */

    /* Counters: by name, by value and as JSON. */
    int n = vsched_counter_count();
    ASSERT_GT(n, 10);
    int handoffs = -1;
    for (int i = 0; i < n; i++) {
        ASSERT_NE(vsched_counter_name(i), nullptr);
        ASSERT_NE(vsched_counter_description(i), nullptr);
        if (std::string(vsched_counter_name(i)) == "handoffs") {
            handoffs = i;
        }
    }
    EXPECT_EQ(vsched_counter_name(n), nullptr);
    ASSERT_GE(handoffs, 0);
    EXPECT_EQ(vsched_counter_value(core, handoffs), 1u);
    EXPECT_EQ(vsched_counter_value(core, -1), 0u);
    size_t need = vsched_counters_json(core, nullptr, 0);
    std::string buf(need + 1, '\0');
    EXPECT_EQ(vsched_counters_json(core, buf.data(), buf.size()), need);
    EXPECT_EQ(buf[need], '\0');
    EXPECT_NE(buf.find("\"handoffs\":1"), std::string::npos);
    char small[8];
    EXPECT_EQ(vsched_counters_json(core, small, sizeof(small)), need);
    EXPECT_EQ(std::strlen(small), 7u);

    /* Trace: spin-detected, receiver yield, handoff, preempt were seen. */
    for (int ev : {VSCHED_TRACE_SPIN_DETECTED, VSCHED_TRACE_YIELD, VSCHED_TRACE_RECEIVER_HIT,
                   VSCHED_TRACE_HANDOFF, VSCHED_TRACE_PREEMPT, VSCHED_TRACE_ACQUIRE_WAIT,
                   VSCHED_TRACE_RELEASE}) {
        EXPECT_NE(std::find(g.events.begin(), g.events.end(), ev), g.events.end())
            << vsched_trace_event_name(ev);
    }
    EXPECT_EQ(g.yields, std::vector<std::string>{"ipi-prio/receiver"});
    EXPECT_STREQ(vsched_trace_event_name(VSCHED_TRACE_HANDOFF), "handoff");
    EXPECT_EQ(vsched_trace_event_name(VSCHED_TRACE__MAX), nullptr);
    vsched_core_free(core);
}

/* The value of run-time setting `name` (fails the test if it has none). */
uint64_t setting(VschedCore *core, const char *name)
{
    uint64_t v = ~0ull;
    EXPECT_TRUE(vsched_setting_get(core, name, &v)) << name;
    return v;
}

TEST(Facade, RuntimeSettingsChangeByName)
{
    VschedConfig c;
    vsched_config_defaults(&c);
    VschedHostOps ops = {nullptr, nullptr, nullptr, nullptr}; /* all optional */
    VschedCore *core = vsched_core_new(&c, 2, &ops, nullptr, nullptr, 0);
    ASSERT_NE(core, nullptr);
    EXPECT_TRUE(vsched_setting_set(core, "directed-yield", policy("ipi")));
    EXPECT_EQ(setting(core, "directed-yield"), policy("ipi"));
    EXPECT_TRUE(vsched_setting_set(core, "directed-yield", policy("ipi-v2")));
    EXPECT_EQ(setting(core, "directed-yield"), policy("ipi-v2"));
    EXPECT_TRUE(vsched_setting_set(core, "directed-yield", policy("ipi")));
    EXPECT_FALSE(vsched_setting_set(core, "directed-yield", 99));
    EXPECT_FALSE(vsched_setting_set(core, "directed-yield", ~0ull));
    EXPECT_EQ(setting(core, "directed-yield"), policy("ipi"));
    EXPECT_TRUE(vsched_setting_set(core, "relaxed-boost", 0));
    EXPECT_EQ(setting(core, "relaxed-boost"), 0u);
    EXPECT_TRUE(vsched_setting_set(core, "ipi-tracking", 0));
    EXPECT_EQ(setting(core, "ipi-tracking"), 0u);
    EXPECT_TRUE(vsched_setting_set(core, "ipi-window", 7'000'000));
    EXPECT_EQ(setting(core, "ipi-window"), 7'000'000u);
    EXPECT_TRUE(vsched_setting_set(core, "ple-gap", 1234));
    EXPECT_EQ(setting(core, "ple-gap"), 1234u);
    EXPECT_TRUE(vsched_setting_set(core, "ple-window", 99'000));
    EXPECT_EQ(setting(core, "ple-window"), 99'000u);
    /* The mechanisms are bits of one word: each changes alone. */
    EXPECT_TRUE(vsched_setting_set(core, "ipi-lift", 1));
    EXPECT_TRUE(vsched_setting_set(core, "halt-handoff", 0));
    EXPECT_EQ(setting(core, "halt-handoff"), 0u);
    EXPECT_EQ(setting(core, "ipi-lift"), 1u);
    /* Refused, changing nothing: outside the row's range or type, a row
     * fixed at start, a name that is no row. */
    EXPECT_FALSE(vsched_setting_set(core, "ple-window", 5'000'000));
    EXPECT_FALSE(vsched_setting_set(core, "ple-gap", 999));
    EXPECT_FALSE(vsched_setting_set(core, "ipi-lift", 2));
    EXPECT_EQ(setting(core, "ple-window"), 99'000u);
    EXPECT_EQ(setting(core, "ple-gap"), 1234u);
    EXPECT_EQ(setting(core, "ipi-lift"), 1u);
    uint64_t v = 42;
    EXPECT_FALSE(vsched_setting_set(core, "slice", 1'000'000));
    EXPECT_FALSE(vsched_setting_get(core, "slice", &v));
    EXPECT_FALSE(vsched_setting_set(core, "no-such-setting", 0));
    EXPECT_FALSE(vsched_setting_get(core, nullptr, &v));
    EXPECT_FALSE(vsched_setting_get(core, "ple-gap", nullptr));
    EXPECT_FALSE(vsched_setting_set(nullptr, "ple-gap", 1234));
    EXPECT_EQ(v, 42u);
    /* Real clock when now_ns is NULL: tick returns a future time. */
    EXPECT_TRUE(vsched_acquire(core, 0));
    EXPECT_GT(vsched_tick(core), 0u);
    vsched_on_mwait(core, 0);
    vsched_vcpu_reset(core, 0);
    vsched_core_free(core);
}

/* The facade's accessors cover exactly the rows the settings table marks
 * run time: each reads, and takes another value its row admits. */
TEST(Facade, EveryRuntimeRowAndNoOtherHasAnAccessor)
{
    VschedConfig c;
    vsched_config_defaults(&c);
    VschedHostOps ops = {nullptr, nullptr, nullptr, nullptr};
    VschedCore *core = vsched_core_new(&c, 2, &ops, nullptr, nullptr, 0);
    ASSERT_NE(core, nullptr);
    int runtime_rows = 0;
    for (int i = 0; i < vsched_setting_count(); i++) {
        const VschedSetting *s = vsched_setting(i);
        uint64_t v = 0;
        ASSERT_EQ(vsched_setting_get(core, s->name, &v), s->runtime) << s->name;
        if (!s->runtime) {
            EXPECT_FALSE(vsched_setting_set(core, s->name, s->min)) << s->name;
            continue;
        }
        runtime_rows++;
        uint64_t other = s->type == VSCHED_SETTING_BOOL ? !v
                         : s->type == VSCHED_SETTING_POLICY
                             ? (v + 1) % vsched_policy_count()
                             : (v == s->max ? s->min : s->max);
        EXPECT_TRUE(vsched_setting_set(core, s->name, other)) << s->name;
        EXPECT_EQ(setting(core, s->name), other) << s->name;
    }
    EXPECT_GE(runtime_rows, 10);
    vsched_core_free(core);
}

/*
 * Steal time as KVM's run_delay: only waits in the queue while runnable
 * count, from the wake (or the involuntary loss of the slot) to the grant;
 * halted time never does.  The glue marks the guest's record preempted
 * when vsched_after_exec() took the slot away, never on a halt.
 */
TEST(Facade, StealTimeCountsQueueWaitsNotHalts)
{
    Glue g;
    VschedCore *core = one_slot_core(g, "none", 2);
    ASSERT_NE(core, nullptr);

    ASSERT_TRUE(vsched_acquire(core, 0));
    ASSERT_FALSE(vsched_acquire(core, 1)); /* runnable, queued */
    g.now += 300'000;
    EXPECT_EQ(vsched_vcpu_steal_ns(core, 1), 0u); /* counted at the grant */
    vsched_release(core, 0, VSCHED_RELEASE_HALT);  /* voluntary: halts */
    ASSERT_TRUE(vsched_acquire(core, 1));
    EXPECT_EQ(vsched_vcpu_steal_ns(core, 1), 300'000u);
    EXPECT_EQ(vsched_vcpu_steal_ns(core, 0), 0u);

    g.now += 5'000'000;                     /* vCPU 0 halted: no steal */
    ASSERT_FALSE(vsched_acquire(core, 0));  /* woken: queued from now */
    g.now += 200'000;
    vsched_tick(core);
    EXPECT_TRUE(vsched_after_exec(core, 1, 0)); /* slice over: involuntary */
    ASSERT_TRUE(vsched_acquire(core, 0));
    EXPECT_EQ(vsched_vcpu_steal_ns(core, 0), 200'000u);

    g.now += 700'000;                       /* 1 waits, preempted */
    vsched_release(core, 0, VSCHED_RELEASE_HALT);
    ASSERT_TRUE(vsched_acquire(core, 1));
    EXPECT_EQ(vsched_vcpu_steal_ns(core, 1), 1'000'000u);
    EXPECT_FALSE(vsched_after_exec(core, 1, 0)); /* nobody waits: keeps it */

    g.now += 10'000'000;                    /* 0 halted all along */
    EXPECT_EQ(vsched_vcpu_steal_ns(core, 0), 200'000u);
    EXPECT_EQ(vsched_vcpu_steal_ns(core, 2), 0u); /* no such vCPU */
    vsched_core_free(core);
}

/* The guest reads CPUID once, at boot: steal-time is fixed at start. */
TEST(Facade, StealTimeIsABootTimeSetting)
{
    const VschedSetting *s = vsched_setting_find("steal-time");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->type, VSCHED_SETTING_BOOL);
    EXPECT_FALSE(s->runtime);
    VschedConfig c;
    vsched_config_defaults(&c);
    VschedHostOps ops = {nullptr, nullptr, nullptr, nullptr};
    VschedCore *core = vsched_core_new(&c, 2, &ops, nullptr, nullptr, 0);
    ASSERT_NE(core, nullptr);
    EXPECT_FALSE(vsched_setting_set(core, "steal-time", 1));
    vsched_core_free(core);
}

/* vCPU reset (the glue calls it from apic_init_reset, as KVM clears in
 * kvm_vcpu_reset()): the reset vCPU forgets its IPI state as receiver and
 * as sender, in both views; the others keep theirs. */
TEST(Facade, VcpuResetForgetsIpiState)
{
    Glue g;
    VschedConfig c;
    vsched_config_defaults(&c);
    char err[128];
    VschedCore *core = vsched_core_new(&c, 3, &kOps, &g, err, sizeof(err));
    ASSERT_NE(core, nullptr) << err;
    int to1 = 1, to2 = 2;
    vsched_on_ipi(core, 0, &to1, 1, 0xfb, 0, 0);
    vsched_on_ipi(core, 1, &to2, 1, 0xfd, 0, 0);
    VschedVcpuInfo i;
    ASSERT_TRUE(vsched_vcpu_info(core, 1, &i));
    EXPECT_EQ(i.last_ipi_sender, 0);
    EXPECT_EQ(i.last_ipi_receiver, 2);
    EXPECT_TRUE(i.series_pending_ipi);
    EXPECT_EQ(i.nr_pending_ipis, 1);

    vsched_vcpu_reset(core, 1);
    ASSERT_TRUE(vsched_vcpu_info(core, 1, &i));
    EXPECT_EQ(i.last_ipi_sender, -1);
    EXPECT_EQ(i.last_ipi_receiver, -1);
    EXPECT_FALSE(i.series_pending_ipi);
    EXPECT_EQ(i.nr_pending_ipis, 0);
    EXPECT_EQ(i.nr_receivers, 1); /* its IPI still pends at 2 (ours) */
    ASSERT_TRUE(vsched_vcpu_info(core, 0, &i));
    EXPECT_EQ(i.last_ipi_receiver, 1); /* the sender's record is its own */
    ASSERT_TRUE(vsched_vcpu_info(core, 2, &i));
    EXPECT_EQ(i.nr_pending_ipis, 1);
    vsched_vcpu_reset(core, 99); /* ignored */
    vsched_core_free(core);
}

/* pv-sched-yield: the glue records the guest's hypercall, the vCPU's
 * next exit hands its slot to the queued target and says it lost it. */
TEST(Facade, PvYieldHandsTheSlotAtTheNextExit)
{
    Glue g;
    VschedCore *core = one_slot_core(g, "vanilla", 2);
    ASSERT_TRUE(vsched_acquire(core, 0));
    ASSERT_FALSE(vsched_acquire(core, 1));
    vsched_pv_yield(core, 0, 1);
    EXPECT_TRUE(vsched_after_exec(core, 0, 0));
    VschedVcpuInfo i;
    ASSERT_TRUE(vsched_vcpu_info(core, 1, &i));
    EXPECT_EQ(i.state_id, VSCHED_STATE_RUNNING);
    EXPECT_EQ(std::count(g.wakes.begin(), g.wakes.end(), 1), 1);
    EXPECT_EQ(std::count(g.events.begin(), g.events.end(), VSCHED_TRACE_PV_YIELD), 1);
    vsched_core_free(core);
}

} // namespace
