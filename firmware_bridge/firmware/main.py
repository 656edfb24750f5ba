"""SiteWarden door controller firmware (MicroPython on an RP2040, e.g. a Raspberry Pi Pico), see PROTOCOL.md.

Wiegand D0/D1 on interrupts with an inter-bit timeout, debounced door contact / request-to-exit / tamper
inputs, a relay per door, reader LED and buzzer lines, all reported over USB serial in framed, CRC'd,
acknowledged messages. Copy `frames.py` and this file to the board (`mpremote cp frames.py main.py :`).
Pin numbers below are the reference wiring in PROTOCOL.md; change PINS for another board.
"""

import os
import select
import sys

import frames
import machine
import utime

FW_VERSION = (1, 0)
PINS = {
    "readers": [{"d0": 2, "d1": 3, "led": 4, "buzzer": 5}, {"d0": 6, "d1": 7, "led": 8, "buzzer": 9}],
    "inputs": [  # (kind, index, pin, active_low)
        (frames.INPUT_DOOR, 0, 10, True), (frames.INPUT_REX, 0, 11, True),
        (frames.INPUT_DOOR, 1, 12, True), (frames.INPUT_REX, 1, 13, True),
        (frames.INPUT_TAMPER, 0, 14, True),
    ],
    "relays": [15, 16],
}
WIEGAND_GAP_MS = 25          # a read is over when no bit came for this long (bits are ~1-2 ms apart)
WIEGAND_MAX_BITS = 64
DEBOUNCE_MS = 30             # an input must hold its new level this long to count
HEARTBEAT_MS = 1000
RETRY_MS = 100               # an unacknowledged event is sent again this often
QUEUE_MAX = 64               # events kept while the host does not answer; the oldest go first when full
MAX_UNLOCK_MS = 60000


def new_boot_id():
    """A random id for this boot. PROTOCOL.md needs a new one on every boot: after a watchdog or hard reset the
    chip id and the clock read the same, and an id made from them would make the host take the new boot's
    events (numbered from 1 again) for repeats of the old boot's and drop them."""
    try:
        return int.from_bytes(os.urandom(4), "big")  # rp2 and esp32 have a hardware source behind it
    except (AttributeError, OSError):
        pass
    import random  # a port without os.urandom: its PRNG, seeded from whatever that port has
    try:
        random.seed()  # a true random seed where the port supports it, else ValueError
    except ValueError:
        random.seed((int.from_bytes(machine.unique_id(), "big") ^ utime.ticks_us()) & 0xFFFFFFFF)
    return random.getrandbits(32)


class WiegandPort:
    """Collects bits in interrupt handlers; `take()` returns a finished read after the inter-bit gap."""

    def __init__(self, d0, d1):
        self.bits = []
        self.last = 0
        self.overflow = False
        machine.Pin(d0, machine.Pin.IN, machine.Pin.PULL_UP).irq(trigger=machine.Pin.IRQ_FALLING,
                                                                 handler=self._zero)
        machine.Pin(d1, machine.Pin.IN, machine.Pin.PULL_UP).irq(trigger=machine.Pin.IRQ_FALLING,
                                                                 handler=self._one)

    def _add(self, bit):
        if len(self.bits) < WIEGAND_MAX_BITS:
            self.bits.append(bit)
        else:
            self.overflow = True
        self.last = utime.ticks_ms()

    def _zero(self, _pin):
        self._add(0)

    def _one(self, _pin):
        self._add(1)

    def take(self, now):
        if not self.bits or utime.ticks_diff(now, self.last) < WIEGAND_GAP_MS:
            return None
        state = machine.disable_irq()
        bits, self.bits = self.bits, []
        machine.enable_irq(state)
        return bits


class DebouncedInput:
    def __init__(self, kind, index, pin, active_low):
        self.kind = kind
        self.index = index
        self.pin = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self.active_low = active_low
        self.state = self._level()
        self.candidate = self.state
        self.since = utime.ticks_ms()

    def _level(self):
        return (self.pin.value() == 0) if self.active_low else (self.pin.value() == 1)

    def poll(self, now):
        """The new state when it changed and held for DEBOUNCE_MS, else None."""
        level = self._level()
        if level != self.candidate:
            self.candidate = level
            self.since = now
            return None
        if level != self.state and utime.ticks_diff(now, self.since) >= DEBOUNCE_MS:
            self.state = level
            return level
        return None


class Controller:
    def __init__(self, wdt=None):
        self.wdt = wdt
        self.seq = 0
        self.event_seq = 0         # events number on their own (PROTOCOL.md, sequence numbers)
        self.queue = []            # (seq, wire bytes) of events waiting for the host's ack
        self.last_sent = 0
        self.seen = []             # recent host command sequence numbers (retries are acked, not redone)
        self.host_session = None   # the seen numbers belong to this host session (HOST_HELLO)
        self.readers = [WiegandPort(r["d0"], r["d1"]) for r in PINS["readers"]]
        self.leds = [machine.Pin(r["led"], machine.Pin.OUT, value=0) for r in PINS["readers"]]
        self.buzzers = [machine.Pin(r["buzzer"], machine.Pin.OUT, value=0) for r in PINS["readers"]]
        self.inputs = [DebouncedInput(*spec) for spec in PINS["inputs"]]
        self.relays = [machine.Pin(p, machine.Pin.OUT, value=0) for p in PINS["relays"]]
        self.relay_until = [None] * len(self.relays)
        self.led_until = [None] * len(self.leds)
        self.buzz = [None] * len(self.buzzers)  # (toggle at, toggles left, on_ms)
        self.decoder = frames.Decoder()
        self.poll = select.poll()
        self.poll.register(sys.stdin, select.POLLIN)
        self.out = sys.stdout.buffer
        self.boot_id = new_boot_id()
        self.started = utime.ticks_ms()

    def next_seq(self):
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def send(self, wire):
        self.out.write(wire)

    def event(self, make):
        self.event_seq = (self.event_seq + 1) & 0xFF
        seq = self.event_seq
        if len(self.queue) >= QUEUE_MAX:
            self.queue.pop(0)
        self.queue.append((seq, make(seq)))

    def pump_queue(self, now):
        if self.queue and utime.ticks_diff(now, self.last_sent) >= RETRY_MS:
            self.send(self.queue[0][1])
            self.last_sent = now

    def on_command(self, ftype, seq, payload, now):
        if ftype == frames.HOST_ACK:
            if self.queue and payload and self.queue[0][0] == payload[0]:
                self.queue.pop(0)
                self.last_sent = utime.ticks_add(now, -RETRY_MS)  # send the next event at once
            return
        if ftype == frames.HOST_HELLO and len(payload) == 4:
            # Carried out every time (the same session again changes nothing): numbers of an earlier session
            # are not retries of this one's.
            session = payload[0] << 24 | payload[1] << 16 | payload[2] << 8 | payload[3]
            if session != self.host_session:
                self.host_session = session
                self.seen = []
            # Who we are first (the host's open discarded the HELLO sent at boot), then the ack.
            self.send(frames.hello(self.next_seq(), self.boot_id, len(self.inputs), FW_VERSION))
            self.send(frames.ack(self.next_seq(), seq))
            return
        known = (frames.UNLOCK, frames.LED, frames.BUZZER, frames.STATUS_REQUEST)
        if ftype not in known:
            self.send(frames.ack(self.next_seq(), seq, frames.ACK_BAD_COMMAND))
            return
        if seq in self.seen:
            self.send(frames.ack(self.next_seq(), seq))
            return
        ok = self.execute(ftype, payload, now)
        self.send(frames.ack(self.next_seq(), seq, frames.ACK_OK if ok else frames.ACK_BAD_COMMAND))
        if ok:
            self.seen.append(seq)
            if len(self.seen) > 32:
                self.seen.pop(0)

    def execute(self, ftype, p, now):
        if ftype == frames.UNLOCK and len(p) == 3 and p[0] < len(self.relays):
            ms = min(p[1] << 8 | p[2], MAX_UNLOCK_MS)
            self.relays[p[0]].value(1)
            self.relay_until[p[0]] = utime.ticks_add(now, ms)
            return True
        if ftype == frames.LED and len(p) == 4 and p[0] < len(self.leds):
            self.leds[p[0]].value(1 if p[1] else 0)  # one-colour LED line: any colour lights it
            self.led_until[p[0]] = utime.ticks_add(now, p[2] << 8 | p[3]) if p[1] else None
            return True
        if ftype == frames.BUZZER and len(p) == 4 and p[0] < len(self.buzzers):
            on_ms = p[1] << 8 | p[2]
            self.buzz[p[0]] = (now, 2 * p[3], on_ms)
            return True
        if ftype == frames.STATUS_REQUEST and not p:
            for inp in self.inputs:
                self.event(lambda s, i=inp: frames.input_changed(s, i.kind, i.index, i.state))
            return True
        return False

    def timers(self, now):
        for i, until in enumerate(self.relay_until):
            if until is not None and utime.ticks_diff(now, until) >= 0:
                self.relays[i].value(0)
                self.relay_until[i] = None
        for i, until in enumerate(self.led_until):
            if until is not None and utime.ticks_diff(now, until) >= 0:
                self.leds[i].value(0)
                self.led_until[i] = None
        for i, buzz in enumerate(self.buzz):
            if buzz is not None and utime.ticks_diff(now, buzz[0]) >= 0:
                at, left, on_ms = buzz
                if left == 0:
                    self.buzzers[i].value(0)
                    self.buzz[i] = None
                else:
                    self.buzzers[i].value(left % 2)
                    self.buzz[i] = (utime.ticks_add(now, on_ms), left - 1, on_ms)

    def run(self):
        self.send(frames.hello(self.next_seq(), self.boot_id, len(self.inputs), FW_VERSION))
        next_beat = utime.ticks_ms()
        while True:
            now = utime.ticks_ms()
            for index, port in enumerate(self.readers):
                bits = port.take(now)
                if bits:
                    self.event(lambda s, r=index, b=bits: frames.wiegand(s, r, b))
            for inp in self.inputs:
                state = inp.poll(now)
                if state is not None:
                    self.event(lambda s, i=inp, st=state: frames.input_changed(s, i.kind, i.index, st))
            if self.poll.poll(0):
                data = sys.stdin.buffer.read(1)  # one byte at a time: never blocks on a half frame
                for ftype, seq, payload in self.decoder.feed(data):
                    self.on_command(ftype, seq, payload, now)
            self.timers(now)
            self.pump_queue(now)
            if self.wdt is not None:
                self.wdt.feed()
            if utime.ticks_diff(now, next_beat) >= 0:
                up = utime.ticks_diff(now, self.started)
                self.send(frames.heartbeat(self.next_seq(), up, len(self.queue)))
                next_beat = utime.ticks_add(now, HEARTBEAT_MS)
            utime.sleep_ms(1)


def main():
    try:
        wdt = machine.WDT(timeout=8000)  # a hung loop reboots the board; the host sees a new HELLO
    except (AttributeError, ValueError):
        wdt = None
    Controller(wdt).run()


if __name__ == "__main__":
    main()
