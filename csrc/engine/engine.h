// Single entry point of the RingRift rules core. Host and device code include only this.
#pragma once
#include "defs.h"
#include "geometry.h"
#include "state.h"
#include "movement.h"
#include "lines.h"
#include "territory.h"
#include "recovery.h"
#include "victory.h"
#include "hash.h"
#include "fast_hash.h"
#include "rules.h"
