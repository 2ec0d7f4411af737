/*
 * vsched: -accel NAME,help lists the accelerator's properties and exits,
 * as -device NAME,help does for devices.  Built with and without vsched:
 * the list is the accelerator's, whatever it holds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/option.h"
#include "qom/object.h"
#include "accel/vsched.h"

void vsched_accel_help(QemuOpts *opts, ObjectClass *oc)
{
    if (qemu_opt_has_help_opt(opts)) {
        type_print_class_properties(object_class_get_name(oc));
        exit(0);
    }
}
