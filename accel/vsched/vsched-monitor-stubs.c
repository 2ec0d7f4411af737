/*
 * vsched: query-vsched and info vsched in a build without the scheduler
 * (configure --disable-vsched).  The QAPI schema is the same in every
 * build, so a management tool gets a clear error, not an unknown command.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-vsched.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"

#define VSCHED_NOT_BUILT \
    "vsched is not built into this QEMU (it was configured with --disable-vsched)"

VschedInfo *qmp_query_vsched(Error **errp)
{
    error_setg(errp, VSCHED_NOT_BUILT);
    return NULL;
}

static void hmp_info_vsched(Monitor *mon, const QDict *qdict)
{
    monitor_printf(mon, "%s\n", VSCHED_NOT_BUILT);
}

static void vsched_monitor_register(void)
{
    monitor_register_hmp("vsched", true, hmp_info_vsched);
}

type_init(vsched_monitor_register);
