"""A child script's opening for the tests of Ctrl-C handed to another thread than the main
one (Linux prefers the main thread; other systems hand a process's signal to any thread that
does not block it): ``interrupt_from_here()``, called on some other thread, waits until the
main thread is blocked in a ``result()`` call, then sends SIGINT to its own thread. The main
thread must still see it; without a sliced wait it would wait on.

A child started from a shell's background job (``pytest ... &``) inherits SIGINT ignored, and
Python then installs no handler for it: the script installs Python's own, so the tests do not
depend on how the suite was started.
"""

INTERRUPT_FROM_ANOTHER_THREAD = """
import signal, sys, threading

signal.signal(signal.SIGINT, signal.default_int_handler)  # not inherited as ignored
never = threading.Event()

def main_thread_waits_in_result():
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        if frame.f_code.co_name == "result":
            return True
        frame = frame.f_back
    return False

def interrupt_from_here():
    while not main_thread_waits_in_result():
        never.wait(0.001)  # polls the main thread's state; never is never set
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
"""
