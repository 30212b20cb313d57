%% The Erlang side of an occasional node (API.md section 11, issue 13).
%%
%% Central starts one VM per node and talks to it over fd 3 ({packet, 4},
%% external term format both ways). The VM does nothing but distribution:
%%
%% * the router (registered as occ_router) owns the channel to central, one
%%   proxy per occasional process that another node or Erlang talks to, and
%%   the table from a proxy's Erlang pid to its occasional pid;
%% * a proxy is that process's Erlang identity: remote proxies link and
%%   monitor it with OTP's own semantics, so per-pair order, noconnection and
%%   node monitoring are Erlang's; its process writes to it and reads from it
%%   over a Unix socket of its own (central is not on that path);
%% * between occasional nodes a message is {'$occ', FromNode, Payload}, the
%%   payload being occasional's own frame, opaque here.
-module(occ_dist).
-export([start/0, main/0, log/2]).

-define(ROUTER, occ_router).
-define(TAB, occ_pids).
-define(DRAIN_MS, 2000).

%% -- start --------------------------------------------------------------------

start() ->
    spawn(?MODULE, main, []).

%% The router's loop runs here; if it ever ends the VM ends, and central sees it.
main() ->
    register(?ROUTER, self()),
    process_flag(trap_exit, true),
    process_flag(message_queue_data, off_heap),
    Fd = list_to_integer(arg(occ_fd)),
    Path = arg(occ_sock),
    Token = list_to_binary(arg(occ_token)),
    Port = open_port({fd, Fd, Fd}, [binary, {packet, 4}, eof]),
    persistent_term:put(occ_central, Port),
    ets:new(?TAB, [named_table, protected, {read_concurrency, true}]),
    _ = file:delete(Path),
    {ok, L} = gen_tcp:listen(0, [{ifaddr, {local, Path}}, binary, {packet, 4},
                                 {active, false}, {backlog, 1024}]),
    spawn_link(fun() -> accept_loop(L, Token) end),
    ok = logger:add_handler(occ_refusals, ?MODULE, #{level => all}),
    to_central({ready, atom_to_binary(node())}),
    try router(#{proxies => #{}, waiting => #{}, spawns => #{}})
    catch C:E:S ->
        io:format(standard_error, "occasional: the node's router failed: ~p~n", [{C, E, S}]),
        erlang:halt(1)
    end.

%% A logger handler: Erlang's handshake tells only the refusing side that a
%% node came with another cookie; central says so where the user looks.
log(#{msg := Msg}, _Config) ->
    Text = try
               case Msg of
                   {string, S} -> unicode:characters_to_binary(S);
                   {report, R} -> iolist_to_binary(io_lib:format("~p", [R]));
                   {F, A} -> iolist_to_binary(io_lib:format(F, A))
               end
           catch _:_ -> <<>>
           end,
    case binary:match(Text, <<"Connection attempt from">>) of
        nomatch -> ok;
        _ -> catch to_central({refused, Text})
    end,
    ok;
log(_, _) ->
    ok.

arg(Name) ->
    {ok, [[Value]]} = init:get_argument(Name),
    Value.

to_central(Term) ->
    erlang:port_command(persistent_term:get(occ_central), term_to_binary(Term)).

%% -- the processes' connections ---------------------------------------------------

accept_loop(L, Token) ->
    {ok, S} = gen_tcp:accept(L),
    Pid = spawn(fun() -> receive go -> hello(S, Token) end end),
    ok = gen_tcp:controlling_process(S, Pid),
    Pid ! go,
    accept_loop(L, Token).

%% A process says who it is with the runtime's token (a neighbour that cannot
%% read the runtime's memory cannot attach as one of its processes).
hello(S, Token) ->
    TL = byte_size(Token),
    case gen_tcp:recv(S, 0, 5000) of
        {ok, <<0, TL:8, Token:TL/binary, Id:64, OsPid:32>>} ->
            Proxy = call_router({attach, Id, OsPid}),
            ok = gen_tcp:controlling_process(S, Proxy),
            Proxy ! {'$occ_attach', S};
        _ ->
            gen_tcp:close(S)
    end.

call_router(Req) ->
    Ref = make_ref(),
    ?ROUTER ! {call, self(), Ref, Req},
    receive {Ref, Reply} -> Reply end.

%% -- the router ----------------------------------------------------------------------

router(St) ->
    receive
        {Port, {data, Bin}} when is_port(Port) ->
            router(from_central(binary_to_term(Bin), St));
        {Port, eof} when is_port(Port) ->
            erlang:halt(0);  % central is gone: so is its node
        {call, From, Ref, Req} ->
            router(local_call(Req, {From, Ref}, St));
        {'$gen_call', From, Req} ->
            router(remote_call(Req, From, St));
        {'EXIT', Pid, Why} ->
            router(proxy_ended(Pid, Why, St));
        _ ->
            router(St)
    end.

reply({Pid, Ref}, Reply) when is_pid(Pid), is_reference(Ref) -> Pid ! {Ref, Reply};
reply(From, Reply) -> gen_server:reply(From, Reply).

local_call({attach, Id, OsPid}, From, St) ->
    {Proxy, St1} = proxy(Id, OsPid, St),
    reply(From, Proxy),
    St1;
local_call({local_proxy, Id, OsPid}, From, St) ->
    {Proxy, St1} = proxy(Id, OsPid, St),
    reply(From, Proxy),
    St1;
local_call(_, From, St) ->
    reply(From, badarg),
    St.

%% Calls from proxies of other nodes (gen_server:call({occ_router, Node}, ...)).
remote_call(kind, From, St) ->
    reply(From, occasional),
    St;
remote_call({proxy, Id, OsPid, Peer}, From, St) when is_integer(Id), is_integer(OsPid) ->
    {Proxy, St1} = proxy(Id, OsPid, St),
    Proxy ! {'$occ_peer', Peer},
    confirmed(Id, {resolve, From, Proxy}, St1);
remote_call({spawn, Blob, Options, Spawner}, From, St) when is_binary(Blob) ->
    Tag = erlang:unique_integer([positive]),
    to_central({spawn, Tag, Blob, Options, pid_term(Spawner)}),
    #{spawns := Spawns} = St,
    St#{spawns := Spawns#{Tag => {From, Spawner}}};
remote_call({whois, Pid}, From, St) ->
    reply(From, pid_term(Pid)),
    St;
remote_call(_, From, St) ->
    reply(From, badarg),
    St.

%% The proxy of local process Id, made if need be; central is asked whether
%% the process lives (it answers alive or gone, and tells its end later).
proxy(Id, OsPid, St = #{proxies := Proxies, waiting := Waiting}) ->
    case Proxies of
        #{Id := {Proxy, OsPid, _}} ->
            {Proxy, St};
        #{} ->
            Proxy = spawn_link(fun() -> proxy_init(Id, OsPid) end),
            ets:insert(?TAB, {Proxy, Id, OsPid}),
            to_central({watch, Id, OsPid}),
            {Proxy, St#{proxies := Proxies#{Id => {Proxy, OsPid, unconfirmed}},
                        waiting := Waiting#{Id => []}}}
    end.

%% Run What once central said whether process Id lives.
confirmed(Id, What, St = #{proxies := Proxies, waiting := Waiting}) ->
    case {Proxies, Waiting} of
        {_, #{Id := Ws}} -> St#{waiting := Waiting#{Id := [What | Ws]}};
        {#{Id := _}, _} -> run_confirmed(What, alive), St;
        _ -> run_confirmed(What, gone), St
    end.

run_confirmed({resolve, From, Proxy}, alive) -> reply(From, {ok, Proxy});
run_confirmed({resolve, From, _}, gone) -> reply(From, noproc).

from_central({alive, Id}, St) ->
    settle(Id, alive, St);
from_central({gone, Id}, St = #{proxies := Proxies}) ->
    St1 = settle(Id, gone, St),
    case Proxies of
        #{Id := {Proxy, _, _}} -> Proxy ! {'$occ_ended', noproc, noproc};
        _ -> ok
    end,
    St1#{proxies := maps:remove(Id, Proxies)};
from_central({ended, Id, ErlReason, Wire}, St = #{proxies := Proxies}) ->
    case Proxies of
        #{Id := {Proxy, _, _}} ->
            [catch unregister(N) || {registered_name, N} <- [process_info(Proxy, registered_name)]],
            Proxy ! {'$occ_ended', ErlReason, Wire};
        _ -> ok
    end,
    St1 = settle(Id, gone, St),
    St1#{proxies := maps:remove(Id, Proxies)};
from_central({register, Name, Id, OsPid}, St) ->
    {Proxy, St1} = proxy(Id, OsPid, St),
    Atom = binary_to_atom(Name),
    catch unregister(Atom),
    catch register(Atom, Proxy),
    St1;
from_central({unregister, Name}, St) ->
    catch unregister(binary_to_atom(Name)),
    St;
from_central({spawned, Tag, Result}, St = #{spawns := Spawns}) ->
    case Spawns of
        #{Tag := {From, Spawner}} ->
            St1 = case Result of
                      {ok, Id, OsPid} ->
                          {Proxy, S1} = proxy(Id, OsPid, St),
                          Proxy ! {'$occ_peer', Spawner},
                          reply(From, {ok, Id, OsPid, Proxy}),
                          S1;
                      {error, _} = Error ->
                          reply(From, Error),
                          St
                  end,
            St1#{spawns := maps:remove(Tag, Spawns)};
        _ -> St
    end;
from_central({connect_me, _} = Req, St) ->
    to_central(Req),
    St;
from_central(_, St) ->
    St.

settle(Id, How, St = #{waiting := Waiting}) ->
    case Waiting of
        #{Id := Ws} ->
            [run_confirmed(W, How) || W <- lists:reverse(Ws)],
            St#{waiting := maps:remove(Id, Waiting)};
        _ -> St
    end.

%% A proxy that ended while its process lives (an Erlang process sent it an
%% untrappable kill, or it failed): its process ends too, for nothing could
%% reach it from other nodes any more.
proxy_ended(Pid, Why, St = #{proxies := Proxies}) ->
    case ets:lookup(?TAB, Pid) of
        [{Pid, Id, _}] ->
            ets:delete(?TAB, Pid),
            case Proxies of
                #{Id := {Pid, _, _}} ->
                    to_central({kill, Id, {erlang, walk_out(Why)}}),
                    St#{proxies := maps:remove(Id, Proxies)};
                _ -> St
            end;
        [] -> St
    end.

%% How a pid travels to Python: a proxy of this node is its occasional pid.
pid_term(Pid) when is_pid(Pid) ->
    case ets:lookup(?TAB, Pid) of
        [{Pid, Id, OsPid}] -> {'$occ_pid', node(), Id, OsPid};
        [] -> Pid
    end;
pid_term(Other) -> Other.

%% -- a proxy ---------------------------------------------------------------------------

-record(p, {id, os_pid, sock = none, pending = [], asked = false,
            remote = #{},      % {Node, Id, OsPid} -> that process's proxy
            known = #{},       % a proxy of another node -> {'$occ_pid', Node, Id, OsPid}
            cached = #{},      % monitor ref -> the key of a remote entry, forgotten when it fires
            mons = #{},        % Erlang monitor ref -> {RefN, Pid}
            refs = #{},        % RefN -> Erlang monitor ref
            links = #{},       % linked pid -> true
            peers = #{},       % occasional proxies to tell our exact reason
            reasons = #{},     % pid -> its exact reason (occasional wire bytes)
            spawned = #{},     % proxies of processes we spawned: their end is never noproc to us
            ending = none}).

proxy_init(Id, OsPid) ->
    process_flag(trap_exit, true),
    process_flag(message_queue_data, off_heap),
    proxy_loop(#p{id = Id, os_pid = OsPid}).

proxy_loop(P) ->
    receive
        {tcp, _, Frame} ->
            P1 = try from_process(Frame, P)
                 catch C:E ->
                     io:format(standard_error, "occasional: bad frame from process ~p: ~p~n",
                               [P#p.id, {C, E}]),
                     P
                 end,
            proxy_loop(P1);
        {'$occ', Node, Payload} ->
            proxy_loop(deliver([<<1, (byte_size(Node)):8>>, Node, Payload], P));
        {'$occ_attach', S} ->
            ok = inet:setopts(S, [{active, true}]),
            [write(S, F) || F <- lists:reverse(P#p.pending)],
            proxy_loop(P#p{sock = S, pending = []});
        {'$occ_peer', Peer} ->
            proxy_loop(P#p{peers = (P#p.peers)#{Peer => true}});
        {'$occ_reason', From, Wire} ->
            proxy_loop(P#p{reasons = (P#p.reasons)#{From => Wire}});
        {'$occ_ended', ErlReason, Wire} ->
            ending(P#p{ending = {ErlReason, Wire}});
        {'DOWN', MRef, process, Pid, Why} when is_map_key(MRef, P#p.mons) ->
            {RefN, _} = maps:get(MRef, P#p.mons),
            P1 = P#p{mons = maps:remove(MRef, P#p.mons), refs = maps:remove(RefN, P#p.refs)},
            Down = reason(Pid, Why, P1),
            proxy_loop(control({down, RefN, Down}, P1#p{spawned = maps:remove(Pid, P1#p.spawned)}));
        {'DOWN', MRef, process, Pid, _} when is_map_key(MRef, P#p.cached) ->
            {Key, Cached} = maps:take(MRef, P#p.cached),
            proxy_loop(forget(Pid, P#p{cached = Cached, remote = maps:remove(Key, P#p.remote)}));
        {nodedown, Node} ->
            proxy_loop(control({nodedown, Node}, P));
        {'EXIT', Pid, Why} when is_pid(Pid) ->
            proxy_loop(exit_signal(Pid, Why, P));
        {'EXIT', _, _} ->
            proxy_loop(P);
        {inet_reply, _, _} ->
            proxy_loop(P);
        {tcp_closed, _} ->
            proxy_loop(P#p{sock = none});
        {tcp_error, _, _} ->
            proxy_loop(P#p{sock = none});
        Term ->
            %% From Erlang: a term, mapped by the Python side.
            proxy_loop(deliver([<<2>>, term_to_binary(walk_out(Term))], P))
    end.

%% Its process ended: forward what it still wrote (until its socket closes),
%% tell the occasional proxies watching us the exact reason, then end with
%% the reason Erlang sees.
ending(P = #p{sock = none, ending = {ErlReason, Wire}}) ->
    [Peer ! {'$occ_reason', self(), Wire} || Peer <- maps:keys(P#p.peers)],
    exit(ErlReason);
ending(P = #p{sock = S}) ->
    receive
        {tcp, S, Frame} ->
            P1 = try from_process(Frame, P) catch _:_ -> P end,
            ending(P1);
        {tcp_closed, S} -> ending(P#p{sock = none});
        {tcp_error, S, _} -> ending(P#p{sock = none})
    after ?DRAIN_MS ->
        ending(P#p{sock = none})
    end.

deliver(Frame, P = #p{sock = none, ending = none, asked = Asked, id = Id}) ->
    Asked orelse to_central({connect_me, Id}),
    P#p{pending = [Frame | P#p.pending], asked = true};
deliver(_Frame, P = #p{sock = none}) ->
    P;  % its process ended
deliver(Frame, P = #p{sock = S}) ->
    write(S, Frame),
    P.

%% Not gen_tcp:send: it waits for {inet_reply, S, _} with a selective receive,
%% which scans the whole mailbox, and a proxy's mailbox holds every message
%% on its way to a process that reads slower than others send (measured:
%% 100,000 queued messages made each send cost milliseconds). port_command
%% suspends the proxy while the socket's queue is full instead; the reply is
%% dropped in proxy_loop.
write(S, Frame) ->
    try erlang:port_command(S, Frame)
    catch error:_ -> false
    end.

control(Term, P) ->
    deliver([<<3>>, term_to_binary(Term)], P).

%% A monitor or link made on a process that had ended is noproc, as in
%% Erlang, except to its spawner: spawn_monitor's DOWN has the real reason
%% even if the process ended before the monitor reached its node.
reason(Pid, Why, P) ->
    Spawned = is_map_key(Pid, P#p.spawned),
    case {P#p.reasons, Why} of
        {#{Pid := Wire}, noproc} when Spawned -> {occasional, node(Pid), Wire};
        {#{Pid := Wire}, _} when Why =/= noproc -> {occasional, node(Pid), Wire};
        {_, noconnection} -> {noconnection, node(Pid)};
        {_, noproc} -> noproc;
        _ -> {erlang, walk_out(Why)}
    end.

%% An exit signal from a linked process goes to central, which ends a process
%% that does not trap exits, or posts ("EXIT", pid, reason) to one that does.
%% What this proxy wrote to the socket reaches the kernel first: the process
%% reads its socket before it queues the EXIT (the order of section 4).
exit_signal(Pid, Why, P = #p{id = Id}) ->
    From = case P#p.known of
               #{Pid := Known} -> Known;
               _ -> pid_term(Pid)
           end,
    Linked = is_map_key(Pid, P#p.links),
    case Why of
        {'$occ_kill', WhyWire} when not Linked ->
            to_central({kill, Id, WhyWire}), P;
        {'$occ_signal', Kind, Detail} when not Linked ->
            to_central({signal, Id, From, {occasional, [Kind, Detail]}}), P;
        normal when not Linked ->
            P;
        _ when not Linked ->
            to_central({signal, Id, From, {erlang, walk_out(Why)}}), P;
        _ ->
            wait_written(P),
            to_central({linked, Id, From, reason(Pid, Why, P)}),
            P#p{links = maps:remove(Pid, P#p.links)}
    end.

wait_written(#p{sock = none}) -> ok;
wait_written(#p{sock = S}) ->
    case erlang:port_info(S, queue_size) of
        {queue_size, 0} -> ok;
        undefined -> ok;
        _ -> timer:sleep(1), wait_written(#p{sock = S})
    end.

%% -- what a process asks of its proxy ----------------------------------------------

from_process(<<1, NL:8, Node:NL/binary, Id:64, OsPid:32, Payload/binary>>, P) ->
    case resolve(binary_to_atom(Node), Id, OsPid, P) of
        {ok, Pid, P1} -> Pid ! {'$occ', atom_to_binary(node()), Payload}, P1;
        {error, _, P1} -> P1
    end;
from_process(<<2, NL:8, Node:NL/binary, ML:16, Name:ML/binary, Payload/binary>>, P) ->
    catch erlang:send({binary_to_atom(Name), binary_to_atom(Node)},
                      {'$occ', atom_to_binary(node()), Payload}),
    P;
from_process(<<3, Etf/binary>>, P) ->
    {Dest, Term} = binary_to_term(Etf),
    {Term1, P1} = walk_in(Term, P),
    case destination(Dest, P1) of
        {ok, To, P2} -> catch erlang:send(To, Term1), P2;
        {error, _, P2} -> P2
    end;
from_process(<<4, Etf/binary>>, P) ->
    request(binary_to_term(Etf), P).

destination({Name, Node}, P) when is_atom(Name), is_atom(Node) -> {ok, {Name, Node}, P};
destination(Target, P) -> target(Target, P).

%% The Erlang pid of a target: an occasional pid's proxy, or an Erlang pid.
target({'$occ_pid', Node, Id, OsPid}, P) when Node =:= node() ->
    {ok, call_router({local_proxy, Id, OsPid}), P};
target({'$occ_pid', Node, Id, OsPid}, P) -> resolve(Node, Id, OsPid, P);
target(Pid, P) when is_pid(Pid) -> {ok, Pid, P};
target(_, P) -> {error, noproc, P}.

resolve(Node, Id, OsPid, P = #p{remote = Remote}) ->
    Key = {Node, Id, OsPid},
    case Remote of
        #{Key := Pid} -> {ok, Pid, P};
        #{} ->
            try gen_server:call({?ROUTER, Node}, {proxy, Id, OsPid, self()}, infinity) of
                {ok, Pid} -> {ok, Pid, remember(Key, Pid, P)};
                _ -> {error, noproc, P}
            catch
                exit:{{nodedown, _}, _} -> {error, {noconnection, Node}, P};
                exit:{noconnection, _} -> {error, {noconnection, Node}, P};
                exit:_ -> {error, noproc, P}
            end
    end.

%% A proxy of another node that this one resolved: an occasional process
%% there, which learns our exact reason when we end (and we its).
%% The entry goes when that proxy does (its process ended, or its node went
%% down: after a restart, the same node, id and Linux pid are another proxy).
remember(Key = {Node, Id, OsPid}, Pid, P) ->
    MRef = erlang:monitor(process, Pid),
    P#p{remote = (P#p.remote)#{Key => Pid},
        cached = (P#p.cached)#{MRef => Key},
        known = (P#p.known)#{Pid => {'$occ_pid', Node, Id, OsPid}},
        peers = (P#p.peers)#{Pid => true}}.

%% What we keep of a proxy of another node once it is gone, unless a monitor
%% or link of ours still waits to fire on it (its DOWN needs the reason).
forget(Pid, P) ->
    Waiting = is_map_key(Pid, P#p.links)
        orelse lists:any(fun({_, W}) -> W =:= Pid end, maps:values(P#p.mons)),
    case Waiting of
        true -> P;
        false -> P#p{known = maps:remove(Pid, P#p.known), peers = maps:remove(Pid, P#p.peers),
                     reasons = maps:remove(Pid, P#p.reasons), spawned = maps:remove(Pid, P#p.spawned)}
    end.

request({monitor, RefN, Target}, P) ->
    case target(Target, P) of
        {ok, Pid, P1} ->
            MRef = erlang:monitor(process, Pid),
            P1#p{mons = (P1#p.mons)#{MRef => {RefN, Pid}}, refs = (P1#p.refs)#{RefN => MRef}};
        {error, Why, P1} ->
            control({down, RefN, Why}, P1)
    end;
request({demonitor, RefN}, P) ->
    case P#p.refs of
        #{RefN := MRef} ->
            erlang:demonitor(MRef, [flush]),
            P#p{mons = maps:remove(MRef, P#p.mons), refs = maps:remove(RefN, P#p.refs)};
        _ -> P
    end;
request({link, ReqN, Target}, P) ->
    case target(Target, P) of
        {ok, Pid, P1} ->
            link(Pid),
            control({reply, ReqN, ok}, P1#p{links = (P1#p.links)#{Pid => true}});
        {error, Why, P1} ->
            control({reply, ReqN, Why}, P1)
    end;
request({unlink, Target}, P) ->
    case target(Target, P) of
        {ok, Pid, P1} -> unlink(Pid), P1#p{links = maps:remove(Pid, P1#p.links)};
        {error, _, P1} -> P1
    end;
request({kill, Target, WhyWire}, P) ->
    case target(Target, P) of
        {ok, Pid, P1} when node(Pid) =/= node() ->
            exit(Pid, case is_occasional(Pid) of true -> {'$occ_kill', WhyWire}; false -> kill end),
            P1;
        {_, _, P1} -> P1
    end;
request({exit_signal, Target, Kind, Detail}, P) ->
    case target(Target, P) of
        {ok, Pid, P1} -> exit(Pid, {'$occ_signal', Kind, Detail}), P1;
        {_, _, P1} -> P1
    end;
request({spawn, ReqN, Node, Blob, Options}, P) ->
    spawn_on(ReqN, Node, Blob, Options, P);
request({node_kind, ReqN, Node}, P) ->
    control({reply, ReqN, node_kind(Node)}, P);
request({connect, ReqN, Node}, P) ->
    control({reply, ReqN, net_kernel:connect_node(Node)}, P);
request({nodes, ReqN}, P) ->
    control({reply, ReqN, [atom_to_binary(N) || N <- nodes()]}, P);
request({monitor_node, Node, Flag}, P) ->
    catch erlang:monitor_node(Node, Flag),
    P;
request({register_global, ReqN, Name, Target}, P) ->
    case target(Target, P) of
        {ok, Pid, P1} -> control({reply, ReqN, global:register_name(Name, Pid)}, P1);
        {error, _, P1} -> control({reply, ReqN, noproc}, P1)
    end;
request({whereis_global, ReqN, Name}, P) ->
    Found = case global:whereis_name(Name) of
                undefined -> undefined;
                Pid -> occasional_pid(Pid)
            end,
    control({reply, ReqN, Found}, P);
request({unregister_global, ReqN, Name}, P) ->
    global:unregister_name(Name),
    control({reply, ReqN, ok}, P).

spawn_on(ReqN, Node, Blob, Options, P) ->
    Link = maps:get(link, Options, false),
    Monitor = maps:get(monitor, Options, undefined),
    try gen_server:call({?ROUTER, Node}, {spawn, Blob, Options, self()}, infinity) of
        {ok, Id, OsPid, Pid} ->
            P1 = case Link of
                     true -> link(Pid), P#p{links = (P#p.links)#{Pid => true}};
                     false -> P
                 end,
            P2 = case Monitor of
                     undefined -> P1;
                     RefN ->
                         MRef = erlang:monitor(process, Pid),
                         P1#p{mons = (P1#p.mons)#{MRef => {RefN, Pid}}, refs = (P1#p.refs)#{RefN => MRef}}
                 end,
            P3 = P2#p{spawned = (P2#p.spawned)#{Pid => true}},
            control({reply, ReqN, {ok, Id, OsPid}}, remember({Node, Id, OsPid}, Pid, P3));
        {error, Why} ->
            control({reply, ReqN, {error, Why}}, P);
        Other ->
            control({reply, ReqN, {error, iolist_to_binary(io_lib:format("~p", [Other]))}}, P)
    catch
        exit:{{nodedown, _}, _} -> control({reply, ReqN, {noconnection, Node}}, P);
        exit:{noconnection, _} -> control({reply, ReqN, {noconnection, Node}}, P);
        exit:{noproc, _} -> control({reply, ReqN, {not_occasional, Node}}, P);
        exit:Why -> control({reply, ReqN, {error, iolist_to_binary(io_lib:format("~p", [Why]))}}, P)
    end.

node_kind(Node) when Node =:= node() -> occasional;
node_kind(Node) ->
    try gen_server:call({?ROUTER, Node}, kind, 10000)
    catch
        exit:{{nodedown, _}, _} -> unreachable;
        exit:{noconnection, _} -> unreachable;
        exit:{noproc, _} -> erlang;
        exit:_ -> unreachable
    end.

is_occasional(Pid) ->
    node_kind(node(Pid)) =:= occasional.

%% A pid as Python gets it: an occasional process (of this node or another)
%% as {'$occ_pid', Node, Id, OsPid}, any other Erlang process as its pid.
occasional_pid(Pid) when node(Pid) =:= node() -> pid_term(Pid);
occasional_pid(Pid) ->
    try gen_server:call({?ROUTER, node(Pid)}, {whois, Pid}, 10000)
    catch exit:_ -> Pid
    end.

%% Terms from Python: {'$occ_pid', Node, Id, OsPid} becomes that process's proxy.
walk_in({'$occ_pid', _, _, _} = T, P) ->
    case target(T, P) of
        {ok, Pid, P1} -> {Pid, P1};
        {error, _, P1} -> {T, P1}
    end;
walk_in(T, P) when is_tuple(T) ->
    {L, P1} = walk_in(tuple_to_list(T), P),
    {list_to_tuple(L), P1};
walk_in([H | T], P) ->
    {H1, P1} = walk_in(H, P),
    {T1, P2} = walk_in(T, P1),
    {[H1 | T1], P2};
walk_in(M, P) when is_map(M) ->
    {L, P1} = walk_in(maps:to_list(M), P),
    {maps:from_list(L), P1};
walk_in(T, P) -> {T, P}.

%% Terms to Python: a proxy of this node becomes its occasional pid.
walk_out(Pid) when is_pid(Pid), node(Pid) =:= node() -> pid_term(Pid);
walk_out(T) when is_tuple(T) -> list_to_tuple(walk_out(tuple_to_list(T)));
walk_out([H | T]) -> [walk_out(H) | walk_out(T)];
walk_out(M) when is_map(M) -> maps:from_list(walk_out(maps:to_list(M)));
walk_out(T) -> T.
