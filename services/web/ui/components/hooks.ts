import { useEffect, useState } from "preact/hooks";

/** The time now, refreshed every `everyMs`, for ages and running durations. */
export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** Whether the page is visible: hidden pages stop polling and streaming (a browser allows six HTTP/1.1 connections per host). */
export function useVisible(): boolean {
  const [visible, setVisible] = useState(document.visibilityState !== "hidden");
  useEffect(() => {
    const update = () => setVisible(document.visibilityState !== "hidden");
    document.addEventListener("visibilitychange", update);
    return () => document.removeEventListener("visibilitychange", update);
  }, []);
  return visible;
}

export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · Corral`;
  }, [title]);
}
