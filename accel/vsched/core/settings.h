/*
 * vsched core: the -accel settings table (see vsched_setting_* in
 * vsched-core.h).  One row per property; the ranges stop values that the
 * core cannot honour (a slice so long that deadlines wrap, one so short
 * that the timer thread spins, a PLE window above its growth clamp).
 */
#ifndef VSCHED_CORE_SETTINGS_H
#define VSCHED_CORE_SETTINGS_H

#include <span>
#include <string>
#include <string_view>

#include "vsched-core.h"

namespace vsched {

std::span<const VschedSetting> settings();
const VschedSetting *find_setting(std::string_view name);
/* "5ms", "100us", "1500ns": the largest unit that divides ns. */
std::string format_duration(uint64_t ns);
std::string setting_range(const VschedSetting &s);
/* help; range; "run time" or "fixed at start". */
std::string setting_description(const VschedSetting &s);
bool check_setting(const VschedSetting &s, uint64_t value, std::string *err);

} // namespace vsched

#endif
