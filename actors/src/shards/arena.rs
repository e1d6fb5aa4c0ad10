//! The built-in simulation `arena`: a walled 2D arena where each player is a circle. An input
//! `{"move":[dx,dy]}` sets the player's velocity to that direction at up to `max_speed` (a
//! longer vector is clamped to full speed); players slide along walls and push each other
//! apart. Config (all optional): `{"width":100,"height":100,"radius":1,"max_speed":10}`.
//! Snapshot: `{"players":{"<user_id>":{"x","y","vx","vy"}},"size":[w,h]}`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::simulation::Simulation;

pub const DEFAULT_SIZE: f64 = 100.0;
pub const DEFAULT_RADIUS: f64 = 1.0;
/// Units per second at full stick.
pub const DEFAULT_MAX_SPEED: f64 = 10.0;
/// Largest arena side accepted in a config.
pub const MAX_SIZE: f64 = 1_000_000.0;

pub struct Arena;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Player {
    pub x: f64,
    pub y: f64,
    pub vx: f64,
    pub vy: f64,
}

#[derive(Debug, Clone)]
pub struct ArenaState {
    pub width: f64,
    pub height: f64,
    pub radius: f64,
    pub max_speed: f64,
    /// By user id; sorted, so snapshots and collision order are deterministic.
    pub players: BTreeMap<String, Player>,
    /// Players that ever joined: picks the next spawn point.
    spawned: u64,
}

fn number(config: &Value, key: &str, default: f64) -> Result<f64, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n > 0.0 && *n <= MAX_SIZE)
            .ok_or_else(|| format!("arena config \"{key}\" must be a positive number up to {MAX_SIZE}")),
    }
}

impl ArenaState {
    pub fn new(config: &Value) -> Result<ArenaState, String> {
        if !(config.is_null() || config.is_object()) {
            return Err("arena config must be an object".into());
        }
        let state = ArenaState {
            width: number(config, "width", DEFAULT_SIZE)?,
            height: number(config, "height", DEFAULT_SIZE)?,
            radius: number(config, "radius", DEFAULT_RADIUS)?,
            max_speed: number(config, "max_speed", DEFAULT_MAX_SPEED)?,
            players: BTreeMap::new(),
            spawned: 0,
        };
        if state.radius * 2.0 > state.width.min(state.height) {
            return Err("arena config: a player (2 × radius) must fit in the arena".into());
        }
        Ok(state)
    }

    /// Spawn points spiral out from the centre (golden angle), so players rarely start on top
    /// of each other; collisions sort out the rest.
    fn spawn_point(&mut self) -> (f64, f64) {
        let k = self.spawned as f64;
        self.spawned += 1;
        let angle = k * 2.399_963_229_728_653;
        let dist = 2.5 * self.radius * k.sqrt();
        let x = self.width / 2.0 + dist * angle.cos();
        let y = self.height / 2.0 + dist * angle.sin();
        (x.clamp(self.radius, self.width - self.radius), y.clamp(self.radius, self.height - self.radius))
    }

    pub fn join(&mut self, player: &str) {
        if !self.players.contains_key(player) {
            let (x, y) = self.spawn_point();
            self.players.insert(player.to_string(), Player { x, y, vx: 0.0, vy: 0.0 });
        }
    }

    /// Sets the player's velocity from a stick direction; the speed is clamped to `max_speed`.
    pub fn steer(&mut self, player: &str, dx: f64, dy: f64) {
        let max = self.max_speed;
        if let Some(p) = self.players.get_mut(player) {
            let len = (dx * dx + dy * dy).sqrt();
            let scale = if len > 1.0 { max / len } else { max };
            p.vx = dx * scale;
            p.vy = dy * scale;
        }
    }

    pub fn step(&mut self, dt: f64) {
        let r = self.radius;
        let mut players: Vec<&mut Player> = self.players.values_mut().collect();
        for p in players.iter_mut() {
            p.x += p.vx * dt;
            p.y += p.vy * dt;
        }
        // Pairs push each other apart along the line between their centres, half each, and
        // lose the part of their velocity that drives into the other.
        for i in 0..players.len() {
            let (head, tail) = players.split_at_mut(i + 1);
            let a = &mut head[i];
            for b in tail.iter_mut() {
                let (dx, dy) = (b.x - a.x, b.y - a.y);
                let dist = (dx * dx + dy * dy).sqrt();
                if dist >= 2.0 * r {
                    continue;
                }
                let (nx, ny) = if dist > 1e-9 { (dx / dist, dy / dist) } else { (1.0, 0.0) };
                let push = (2.0 * r - dist) / 2.0;
                a.x -= nx * push;
                a.y -= ny * push;
                b.x += nx * push;
                b.y += ny * push;
                let into_b = a.vx * nx + a.vy * ny;
                if into_b > 0.0 {
                    a.vx -= into_b * nx;
                    a.vy -= into_b * ny;
                }
                let into_a = b.vx * nx + b.vy * ny;
                if into_a < 0.0 {
                    b.vx -= into_a * nx;
                    b.vy -= into_a * ny;
                }
            }
        }
        // Walls last, so nobody ends a tick outside; velocity into a wall is dropped (sliding).
        let (w, h) = (self.width, self.height);
        for p in players.iter_mut() {
            if p.x < r || p.x > w - r {
                p.x = p.x.clamp(r, w - r);
                if (p.x <= r && p.vx < 0.0) || (p.x >= w - r && p.vx > 0.0) {
                    p.vx = 0.0;
                }
            }
            if p.y < r || p.y > h - r {
                p.y = p.y.clamp(r, h - r);
                if (p.y <= r && p.vy < 0.0) || (p.y >= h - r && p.vy > 0.0) {
                    p.vy = 0.0;
                }
            }
        }
    }

    pub fn snapshot(&self) -> Value {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        let players: Map<String, Value> = self
            .players
            .iter()
            .map(|(id, p)| (id.clone(), json!({"x": round(p.x), "y": round(p.y), "vx": round(p.vx), "vy": round(p.vy)})))
            .collect();
        json!({"players": players, "size": [self.width, self.height]})
    }
}

/// `[dx, dy]` of a `{"move":[dx,dy]}` input.
fn stick(input: &Value) -> Result<(f64, f64), String> {
    let bad = || "arena input must be {\"move\":[dx,dy]} with two finite numbers".to_string();
    let pair = input.get("move").and_then(Value::as_array).filter(|a| a.len() == 2).ok_or_else(bad)?;
    let n = |v: &Value| v.as_f64().filter(|f| f.is_finite()).ok_or_else(bad);
    Ok((n(&pair[0])?, n(&pair[1])?))
}

impl Simulation for Arena {
    type State = ArenaState;

    fn init(&self, config: &Value) -> Result<ArenaState, String> {
        ArenaState::new(config)
    }

    /// Players come back where the snapshot left them; the size comes from the config.
    fn restore(&self, config: &Value, snapshot: &Value) -> Result<ArenaState, String> {
        let mut state = ArenaState::new(config)?;
        let players = snapshot.get("players").and_then(Value::as_object).ok_or("snapshot has no \"players\" object")?;
        for (id, p) in players {
            let f = |k: &str| p.get(k).and_then(Value::as_f64).filter(|v| v.is_finite()).ok_or(format!("player {id}: bad \"{k}\""));
            let (r, w, h) = (state.radius, state.width, state.height);
            let player = Player { x: f("x")?.clamp(r, w - r), y: f("y")?.clamp(r, h - r), vx: f("vx")?, vy: f("vy")? };
            state.players.insert(id.clone(), player);
        }
        state.spawned = state.players.len() as u64;
        Ok(state)
    }

    fn players(&self, state: &ArenaState) -> Vec<String> {
        state.players.keys().cloned().collect()
    }

    fn join(&self, state: &mut ArenaState, player: &str) {
        state.join(player);
    }

    fn leave(&self, state: &mut ArenaState, player: &str) {
        state.players.remove(player);
    }

    fn check_input(&self, input: &Value) -> Result<(), String> {
        stick(input).map(drop)
    }

    fn apply_input(&self, state: &mut ArenaState, player: &str, input: &Value) -> Result<(), String> {
        let (dx, dy) = stick(input)?;
        state.join(player);
        state.steer(player, dx, dy);
        Ok(())
    }

    fn step(&self, state: &mut ArenaState, dt: f64) {
        state.step(dt);
    }

    fn snapshot(&self, state: &ArenaState) -> Value {
        state.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> ArenaState {
        ArenaState::new(&json!({"width": 20, "height": 10, "radius": 1, "max_speed": 5})).unwrap()
    }

    fn place(s: &mut ArenaState, id: &str, x: f64, y: f64) {
        s.join(id);
        let p = s.players.get_mut(id).unwrap();
        p.x = x;
        p.y = y;
    }

    #[test]
    fn moves_at_clamped_speed() {
        let mut s = arena();
        place(&mut s, "a", 5.0, 5.0);
        s.steer("a", 3.0, 4.0); // length 5: clamped to unit length, so full speed 5
        s.step(0.1);
        let p = s.players["a"];
        assert!((p.vx - 3.0).abs() < 1e-9 && (p.vy - 4.0).abs() < 1e-9, "{p:?}");
        assert!((p.x - 5.3).abs() < 1e-9 && (p.y - 5.4).abs() < 1e-9, "{p:?}");
        s.steer("a", 0.5, 0.0); // half stick, half speed
        assert!((s.players["a"].vx - 2.5).abs() < 1e-9);
    }

    #[test]
    fn walls_stop_and_slide() {
        let mut s = arena();
        place(&mut s, "a", 18.5, 5.0);
        s.steer("a", 1.0, 0.0);
        s.step(1.0);
        let p = s.players["a"];
        assert_eq!((p.x, p.vx), (19.0, 0.0), "stopped at the wall, radius inside");
        s.steer("a", 1.0, 1.0);
        s.step(0.1);
        let p = s.players["a"];
        assert_eq!(p.x, 19.0);
        assert!(p.y > 5.0, "slides along the wall: {p:?}");
        for _ in 0..100 {
            s.step(0.1);
        }
        let p = s.players["a"];
        assert_eq!((p.x, p.y), (19.0, 9.0), "ends in the corner");
    }

    #[test]
    fn players_push_each_other_apart() {
        let mut s = arena();
        place(&mut s, "a", 5.0, 5.0);
        place(&mut s, "b", 7.5, 5.0);
        s.steer("a", 1.0, 0.0);
        for _ in 0..20 {
            s.step(0.05);
        }
        let (a, b) = (s.players["a"], s.players["b"]);
        let dist = ((b.x - a.x).powi(2) + (b.y - a.y).powi(2)).sqrt();
        assert!(dist >= 2.0 - 1e-6, "no overlap after the collision: {dist}");
        assert!(b.x > 7.5, "b was pushed: {b:?}");
        assert!(a.vx.abs() < 1e-9, "a no longer drives into b: {a:?}");
    }

    #[test]
    fn spawns_do_not_overlap_much_and_stay_inside() {
        let mut s = arena();
        for i in 0..30 {
            s.join(&format!("p{i}"));
        }
        for _ in 0..10 {
            s.step(0.05);
        }
        for p in s.players.values() {
            assert!(p.x >= 1.0 && p.x <= 19.0 && p.y >= 1.0 && p.y <= 9.0, "{p:?}");
        }
    }

    #[test]
    fn snapshot_round_trips_through_restore() {
        let mut s = arena();
        place(&mut s, "a", 3.0, 4.0);
        s.steer("a", 0.0, -1.0);
        let snap = s.snapshot();
        assert_eq!(snap["size"], json!([20.0, 10.0]));
        assert_eq!(snap["players"]["a"], json!({"x": 3.0, "y": 4.0, "vx": 0.0, "vy": -5.0}));
        let config = json!({"width": 20, "height": 10});
        let back = Arena.restore(&config, &snap).unwrap();
        assert_eq!(back.players["a"], s.players["a"]);
    }

    #[test]
    fn bad_inputs_and_configs_are_refused() {
        assert!(Arena.check_input(&json!({"move": [1, 0]})).is_ok());
        for bad in [json!({}), json!({"move": [1]}), json!({"move": ["a", 1]}), json!(3)] {
            assert!(Arena.check_input(&bad).is_err(), "{bad}");
        }
        assert!(ArenaState::new(&json!({"width": -1})).is_err());
        assert!(ArenaState::new(&json!({"radius": 60})).is_err());
        assert!(ArenaState::new(&json!([1])).is_err());
    }
}
