//! One timer per connection, moved lazily: a deadline later than the armed
//! one costs nothing until the armed one fires (then it is re-armed once),
//! so request after request on a connection never touches tokio's timer
//! wheel, while a stalled one is still cut off on time. Deadlines on one
//! connection only move later in the common case (each request starts after
//! the last), which is what makes this cheap.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
}

impl LazyTimer {
    pub fn new(deadline: Instant) -> LazyTimer {
        LazyTimer { sleep: Box::pin(tokio::time::sleep_until(deadline)), armed: deadline }
    }

    /// Completes at `deadline`.
    pub async fn until(&mut self, deadline: Instant) {
        std::future::poll_fn(|cx| self.poll_until(deadline, cx)).await
    }

    /// Ready once `deadline` has passed; otherwise the task is woken by then.
    pub fn poll_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.armed > deadline {
                self.sleep.as_mut().reset(deadline);
                self.armed = deadline;
            }
            std::task::ready!(self.sleep.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_it_is_given() {
        let start = Instant::now();
        let mut timer = LazyTimer::new(start + Duration::from_secs(1));
        // A later deadline: the armed one fires first and is moved on.
        timer.until(start + Duration::from_secs(5)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        // An earlier one re-arms at once.
        let now = Instant::now();
        timer.until(now + Duration::from_millis(10)).await;
        assert_eq!(Instant::now() - now, Duration::from_millis(10));
        // A deadline already past is ready at once.
        timer.until(now).await;
        assert_eq!(Instant::now() - now, Duration::from_millis(10));
    }
}
