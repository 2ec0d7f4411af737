#include "trace/trace-accel_vsched.h"
