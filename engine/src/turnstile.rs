//! First come, first served, strictly: a caller takes its place the moment
//! it arrives (synchronously, before any `.await`) and is served in that
//! order, whatever order the executor happens to wake waiters in.
//!
//! Kafka's per-connection ordering rests on this: a client pipelining
//! produce requests to one partition expects its batches at increasing
//! offsets. Event-style wake-ups do not give that on their own: a woken
//! waiter is only queued to run, and a newcomer polled before it finds the
//! resource free and goes first (glommio's channel wake-ups even run in
//! reverse). A [`Turn`] cannot be overtaken: only the holder of the lowest
//! outstanding place is ever ready.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct Turnstile {
    st: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// The place the next arrival gets.
    next: u64,
    /// The place being served; every lower one is done.
    serving: u64,
    /// Wakers of places still waiting.
    waiting: BTreeMap<u64, Waker>,
    /// Places above `serving` whose holders left before their turn.
    left: BTreeSet<u64>,
}

impl Turnstile {
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Takes the next place. Its turn comes when every earlier place has
    /// been dropped.
    pub fn take(self: &Rc<Self>) -> Turn {
        let mut st = self.st.borrow_mut();
        let place = st.next;
        st.next += 1;
        Turn { turnstile: self.clone(), place }
    }

    /// No place is taken and not yet dropped.
    pub fn is_idle(&self) -> bool {
        let st = self.st.borrow();
        st.serving == st.next
    }
}

/// A place in a [`Turnstile`]: its turn lasts until it is dropped.
pub struct Turn {
    turnstile: Rc<Turnstile>,
    place: u64,
}

impl Turn {
    /// Whether every earlier place is done.
    pub fn is_up(&self) -> bool {
        self.turnstile.st.borrow().serving == self.place
    }

    /// Waits for this place's turn.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut st = self.turnstile.st.borrow_mut();
            if st.serving == self.place {
                st.waiting.remove(&self.place);
                return Poll::Ready(());
            }
            match st.waiting.get_mut(&self.place) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => *w = cx.waker().clone(),
                None => {
                    st.waiting.insert(self.place, cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let woken = {
            let mut st = self.turnstile.st.borrow_mut();
            st.waiting.remove(&self.place);
            if st.serving != self.place {
                // Left before its turn: skipped when the turn gets here.
                st.left.insert(self.place);
                return;
            }
            st.serving += 1;
            loop {
                let serving = st.serving;
                if !st.left.remove(&serving) {
                    break;
                }
                st.serving += 1;
            }
            let serving = st.serving;
            st.waiting.remove(&serving)
        };
        if let Some(w) = woken {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;
    use std::pin::pin;
    use std::task::Context;

    fn ready(turn: &Turn) -> bool {
        let waker = noop_waker();
        pin!(turn.wait()).poll(&mut Context::from_waker(&waker)).is_ready()
    }

    #[test]
    fn places_are_served_in_the_order_they_were_taken() {
        let t = Turnstile::new();
        let (a, b, c) = (t.take(), t.take(), t.take());
        assert!(ready(&a) && !ready(&b) && !ready(&c));
        drop(a);
        assert!(ready(&b) && !ready(&c));
        drop(b);
        assert!(ready(&c));
        drop(c);
        assert!(t.is_idle());
    }

    #[test]
    fn a_place_left_before_its_turn_is_skipped() {
        let t = Turnstile::new();
        let (a, b, c, d) = (t.take(), t.take(), t.take(), t.take());
        drop(c);
        drop(b);
        assert!(!ready(&d), "a is still served");
        drop(a);
        assert!(ready(&d));
        assert!(!t.is_idle());
        drop(d);
        assert!(t.is_idle());
    }

    #[test]
    fn only_the_next_place_is_woken() {
        let woke = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = Turnstile::new();
        let turns: Vec<Turn> = (0..4).map(|_| t.take()).collect();
        for (i, turn) in turns.iter().enumerate().skip(1) {
            let woke = woke.clone();
            let waker = futures::task::waker(std::sync::Arc::new(Recorder(i, woke)));
            assert!(pin!(turn.wait()).poll(&mut Context::from_waker(&waker)).is_pending());
        }
        let mut turns = turns.into_iter();
        drop(turns.next());
        assert_eq!(*woke.lock().unwrap(), vec![1]);
        drop(turns.next());
        assert_eq!(*woke.lock().unwrap(), vec![1, 2]);
    }

    struct Recorder(usize, std::sync::Arc<std::sync::Mutex<Vec<usize>>>);
    impl futures::task::ArcWake for Recorder {
        fn wake_by_ref(this: &std::sync::Arc<Self>) {
            this.1.lock().unwrap().push(this.0);
        }
    }
}
