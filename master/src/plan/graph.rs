//! Graph algorithms the planner and the simulator share: strongly connected components
//! (Tarjan's algorithm) and critical paths. Builds are indices; a build's *successors* are the
//! builds it needs first (its providers), so components come out providers first.

/// Tarjan's algorithm, iterative (a deep dependency chain must not overflow the stack): the
/// strongly connected components of builds `0..n`, where `successors(v)` are the builds `v`
/// needs first. A component comes out after every component it needs.
pub fn components(n: usize, successors: impl Fn(usize) -> Vec<usize>) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>, usize)> = vec![(root, successors(root), 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((v, succ, pos)) = work.last_mut() {
            let v = *v;
            if let Some(&w) = succ.get(*pos) {
                *pos += 1;
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, successors(w), 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some((parent, _, _)) = work.last() {
                    low[*parent] = low[*parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    loop {
                        let w = stack.pop().expect("v is on the stack");
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(component);
                }
            }
        }
    }
    out
}

/// Whether a component of [`components`] is a cycle: more than one build, or one that needs
/// itself.
pub fn is_cycle(component: &[usize], successors: impl Fn(usize) -> Vec<usize>) -> bool {
    component.len() > 1 || successors(component[0]).contains(&component[0])
}

/// Critical-path priorities: for each build that `weight` counts, its weight plus the largest
/// priority among the builds that need it (`dependents`); 0 for the others. `order` lists every
/// build with what it needs before it (a topological order, or [`components`] flattened).
pub fn critical_paths(
    order: &[usize],
    dependents: &[Vec<usize>],
    weight: impl Fn(usize) -> Option<u64>,
) -> Vec<u64> {
    let mut priority = vec![0u64; dependents.len()];
    for &v in order.iter().rev() {
        if let Some(w) = weight(v) {
            // Builds not counted have priority 0, so they add nothing to the maximum.
            let longest = dependents[v]
                .iter()
                .map(|&d| priority[d])
                .max()
                .unwrap_or(0);
            priority[v] = w + longest;
        }
    }
    priority
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_come_out_providers_first_and_cycles_are_found() {
        // 0 needs 1, 1 needs 2, 2 needs 1 (a cycle), 3 needs itself, 4 needs nothing.
        let needs: Vec<Vec<usize>> = vec![vec![1], vec![2], vec![1], vec![3], vec![]];
        let order = components(5, |v| needs[v].clone());
        let position = |b: usize| order.iter().position(|c| c.contains(&b)).unwrap();
        assert!(position(1) < position(0));
        assert_eq!(position(1), position(2));
        let cycles: Vec<Vec<usize>> = order
            .iter()
            .filter(|c| is_cycle(c, |v| needs[v].clone()))
            .map(|c| {
                let mut c = c.clone();
                c.sort_unstable();
                c
            })
            .collect();
        assert_eq!(cycles, [vec![1, 2], vec![3]]);
    }

    #[test]
    fn critical_paths_add_the_longest_chain_of_counted_dependents() {
        // 0 -> 1 -> 2 and 0 -> 3: 1, 2 and 3 need 0, 2 needs 1; 3 is not counted.
        let dependents = vec![vec![1, 3], vec![2], vec![], vec![]];
        let weights = [5, 7, 11, 100];
        let p = critical_paths(&[0, 1, 2, 3], &dependents, |v| {
            (v != 3).then_some(weights[v])
        });
        assert_eq!(p, [23, 18, 11, 0]);
    }
}
